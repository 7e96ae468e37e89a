"""Data for training SAN models.

- :mod:`.folders`: ImageNet-style folders (``DATA/train/CLASS/*``, ``DATA/val/CLASS/*``), checked,
  read with torchvision's ``ImageFolder``, and the transforms of Zhao et al., CVPR 2020;
- :mod:`.small`: real datasets that ship inside packages (scikit-learn digits, scikit-image
  photos), for CPU runs of a few minutes;
- :mod:`.imagenette`: a checked download of Imagenette, ten ImageNet classes, for one GPU.

``python -m sanmini.data {digits,photos,imagenette} DIR`` writes any of them as a folder that
``python -m sanmini.train DIR`` trains on.
"""
from .folders import (IMAGENET_MEAN, IMAGENET_STD, check_image_folder, check_images, eval_transform,
                      image_folder, read_image, save_image_folder, train_transform)
from .imagenette import IMAGENETTE, download, download_imagenette
from .small import DEFAULT_PHOTOS, PHOTOS, digits, noisy_crops, photo, photo_crops

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "check_image_folder", "check_images", "image_folder",
           "read_image", "train_transform", "eval_transform", "save_image_folder", "IMAGENETTE", "download",
           "download_imagenette", "PHOTOS", "DEFAULT_PHOTOS", "digits", "photo", "photo_crops",
           "noisy_crops"]
