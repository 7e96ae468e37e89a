"""Figures measured on the reference implementation of SAN (Zhao et al., CVPR 2020), for comparison.

They were measured once, on a GPU with the reference's CuPy kernels, which is not where the book and
the tests run; so they are kept here, as plain values, in one place: the book,
``bench/train_step.py`` and ``bench/RESULTS.md`` read them from this module, which installs with
``pip install sanmini`` (the chapters also run in Colab, without the repository).

What was measured
    One training step of a model in train mode: forward, cross-entropy, backward and an SGD
    update, on a batch of :data:`BATCH` images of :data:`IMAGE_SIZE` x :data:`IMAGE_SIZE` pixels,
    in float32. :data:`IMAGES_PER_S`: images per second of a step, :data:`PEAK_GB`: the peak GPU
    memory of a step, and :data:`STEP_MS` with :data:`PROFILE_MS`: a profile of one step of SAN10
    pairwise.
On what
    One NVIDIA H200 GPU; the reference implementation, hszhao/SAN at commit d88b022, whose CuPy
    kernels (aggregation, subtraction) ran through a small compatibility shim for CuPy 13; torch
    2.11.
When
    2026-11-26 (:data:`SETTING` holds all of this as a dict).

Two more were measured the same way, beside it: a ResNet26, the paper's convolutional baseline
(hszhao/SAN has no ResNet; its figures are under ``"resnet26"``), and, in :data:`UNFOLD_COMPILE`,
SAN10 pairwise with both operators written in plain torch with unfold (as ``sanmini``'s
``"torch"`` backend) and the model under ``torch.compile``.

Peak memory is in GB as the measurement reported it; ``sanmini``'s own benchmarks write GB for 10^9
bytes, and the book GiB for 2^30 bytes.
"""
from __future__ import annotations

__all__ = ["SETTING", "BATCH", "IMAGE_SIZE", "IMAGES_PER_S", "PEAK_GB", "UNFOLD_COMPILE", "STEP_MS",
           "PROFILE_MS"]

#: Images in the batch of each measured step.
BATCH = 64
#: Side of the square images, in pixels.
IMAGE_SIZE = 224

#: What was measured, on what and when, as a dict of strings and numbers.
SETTING = {
    "gpu": "one NVIDIA H200",
    "implementation": "hszhao/SAN at d88b022, its CuPy kernels through a shim for CuPy 13",
    "torch": "2.11",
    "date": "2026-11-26",
    "batch": BATCH,
    "image_size": IMAGE_SIZE,
    "dtype": "float32",
}

#: Images per second of one training step, by model name (as :func:`sanmini.models.create` names them).
IMAGES_PER_S = {"san10_pairwise": 306, "san10_patchwise": 752, "resnet26": 3240}

#: Peak GPU memory of one training step, in GB as the measurement gave it, by model name.
PEAK_GB = {"san10_pairwise": 20.5, "san10_patchwise": 12.0, "resnet26": 3.3}

#: Images per second and peak GB of one training step of SAN10 pairwise with its operators in
#: plain torch (unfold), under ``torch.compile``, measured the same way.
UNFOLD_COMPILE = {"images_per_s": 527, "peak_gb": 27.7}

#: Milliseconds of one profiled training step of the reference SAN10 pairwise (64 images at
#: 306 images/s is 209 ms).
STEP_MS = 209

#: Milliseconds of that step spent in two of its parts, each summed over the step. Batch
#: normalisation over the weight branch's tensors of shape (N, C, K*K, H*W) (gamma's batch norms),
#: and the CuPy attention kernels (aggregation and subtraction); the rest was not broken down.
PROFILE_MS = {"batch norm over the (N, C, K*K, H*W) tensors": 137.0,
              "attention kernels (aggregation, subtraction)": 8.8}
