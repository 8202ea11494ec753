import pytest


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory):
    """300 synthetic 32×32 crops (100 per class), written once per session."""
    from edgemask.data.synth import write_synth_dataset

    out = tmp_path_factory.mktemp("training") / "synth"
    write_synth_dataset(out, n=300, size=32, seed=3, n_scenes=0)
    return out
