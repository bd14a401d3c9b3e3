"""The datasets' normalisation constants (per channel, RGB), which the models' configurations name."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # CIFAR-10's training images, per channel
CIFAR_STD = (0.2470, 0.2435, 0.2616)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "CIFAR_MEAN", "CIFAR_STD"]
