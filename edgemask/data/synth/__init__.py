"""Synthetic face-mask data: labelled face crops and VOC-annotated scenes.

Everything is drawn offline from a seed, so a dataset can be rebuilt
byte-for-byte anywhere (same OpenCV build) and tests need no downloads.

How a face is made
------------------
A head is described in a *canonical frame*: origin at the face centre, x to
the right, y down, unit = the face's half-width at the cheekbones. Eyes sit
near y = -0.2, the nose tip near 0.36, the mouth near 0.72, the chin near 1.2.
One affine map (:class:`_Frame`: scale, rotation, translation) takes canonical
points to pixels, and every shape (face, hair, eyes, nose, mouth, mask, glasses)
is built from canonical points and drawn with antialiased OpenCV primitives.
Because the mask polygon and the landmarks come out of the same map, the
attributes returned with each crop say exactly where the mask was drawn and
where the nose and mouth are, which the tests use to check the labels.

Heads are painted onto an empty layer with its own coverage (alpha) channel,
then composited over a procedural background texture; for scenes the same layer
is pasted into a larger frame. Everything is drawn at 2-3x the output size and
shrunk with ``INTER_AREA`` (cheap supersampling), then lighting, blur, sensor
noise and JPEG artefacts are applied.

About 40% of the crops use real faces from ``skimage.data.lfw_subset()``
(25x25 grayscale), upscaled and tinted to a skin tone, with the same drawn
masks; ``no_mask`` ones stay plain, so a real bare face means ``no_mask``.
Only the first :data:`LFW_TRAIN_FACES` of the 100 are ever drawn: the rest are
kept out of every generated set so that :mod:`edgemask.data.realfaces` can
test a trained model on real faces it has never seen.

The class cue is physical only: is there a mask, is the nose out, is the mouth
out. Skin tone, mask colour and style, hair, glasses, background and lighting
are drawn from the same distributions for every class (mask colour/style for
the two masked classes alike).

Determinism: item ``i`` of kind ``k`` uses ``np.random.default_rng([seed, k, i])``
and nothing else, so items do not depend on one another (order-free, easy to
parallelise later).

Where each part lives
---------------------
``common`` (constants, palettes, colour helpers), ``geometry`` (the canonical
frame, the painter, face shapes), ``texture`` (backgrounds, lighting,
degradation), ``features`` (skin, hair, eyes, nose, mouth, beard, glasses,
hats), ``masks``, ``head`` (a whole labelled crop, drawn or LFW-based),
``scenes`` (several heads in a frame, with VOC boxes) and ``writer`` (the
dataset on disk).
"""

from __future__ import annotations

from edgemask.config import SynthConfig
from edgemask.data.synth.common import FORMAT, FORMAT_VERSION, GENERATOR, LFW_TRAIN_FACES
from edgemask.data.synth.head import render_face
from edgemask.data.synth.scenes import render_scene
from edgemask.data.synth.writer import crop_label, voc_xml, write_synth_dataset

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "GENERATOR",
    "LFW_TRAIN_FACES",
    "SynthConfig",
    "crop_label",
    "render_face",
    "render_scene",
    "voc_xml",
    "write_synth_dataset",
]
