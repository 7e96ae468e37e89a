"""The models of Zhao et al., CVPR 2020: SAN10/15/19 (pairwise and patchwise), ResNet26/38/50."""
from .flops import count_flops
from .pretrained import check_state_dict, load_pretrained
from .registry import MODELS, create
from .resnet import ResNet
from .san import SAN

__all__ = ["MODELS", "create", "count_flops", "load_pretrained", "check_state_dict", "SAN", "ResNet"]
