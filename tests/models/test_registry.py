import pytest
import torch

from edgemask.errors import ModelError
from edgemask.models import count_flops, count_parameters, create_model, get_model_spec, list_models
from edgemask.models.registry import resolved_args


def test_registry_has_the_seed_families():
    names = list_models()
    for required in ("seed_cnn", "mobilenet_v2_small", "linear", "mlp"):
        assert required in names
    assert {get_model_spec(n).family for n in names} >= {"cnn", "linear", "mlp"}


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("num_classes", [2, 3])
def test_every_model_maps_pixels_to_logits(name, num_classes):
    model = create_model(name, num_classes=num_classes, input_size=32).eval()
    x = torch.rand(4, 3, 32, 32)
    y = model(x)
    assert y.shape == (4, num_classes)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    # Normalization is inside the model: its constants are buffers and the
    # first thing applied, so a constant-mean image maps to zero after it.
    mean = model.normalize.mean
    z = model.normalize(mean.expand(1, 3, 32, 32))
    assert torch.allclose(z, torch.zeros_like(z))
    # Gradients reach the input pixels (needed by DeepFool).
    x.requires_grad_(True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ModelError, match="seed_cnn"):
        create_model("resnet9000")


def test_unknown_argument_is_a_clear_error():
    with pytest.raises(ModelError, match="no argument"):
        create_model("linear", depth=3)


def test_resolved_args_record_every_default():
    args = resolved_args("seed_cnn", num_classes=2)
    assert args["num_classes"] == 2 and args["input_size"] == 64 and args["widths"] == [16, 32, 64, 128]
    # The recorded args rebuild an identical architecture.
    a = create_model("seed_cnn", **args)
    b = create_model("seed_cnn", num_classes=2)
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]


def test_parameter_and_flop_counts_are_exact_for_linear():
    m = create_model("linear", num_classes=3, input_size=8)
    assert count_parameters(m) == 3 * 8 * 8 * 3 + 3
    assert count_flops(m, 8) == 2 * 3 * 8 * 8 * 3


def test_flops_of_a_conv_net_count_every_conv():
    m = create_model("seed_cnn", num_classes=3, input_size=32, widths=(4,), hidden=5)
    # conv 3->4 at 32x32 with 3x3 kernels, then FC 4*16*16 -> 5 -> 3.
    expected = 2 * (32 * 32 * 4 * 27 + 4 * 16 * 16 * 5 + 5 * 3)
    assert count_flops(m, 32) == expected
