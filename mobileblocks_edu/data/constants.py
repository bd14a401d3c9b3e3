"""The datasets' normalisation constants (per channel, RGB), which the models' configurations name."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # CIFAR-10's training images, per channel
CIFAR_STD = (0.2470, 0.2435, 0.2616)

# Imagenette's ten classes are ImageNet-1k classes: their indices among its 1,000 outputs
# (ImageNet's class order is the sorted wnids), in Imagenette's label order
IMAGENETTE_IMAGENET_INDEX = {"n01440764": 0, "n02102040": 217, "n02979186": 482, "n03000684": 491, "n03028079": 497,
                             "n03394916": 566, "n03417042": 569, "n03425413": 571, "n03445777": 574, "n03888257": 701}

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "CIFAR_MEAN", "CIFAR_STD", "IMAGENETTE_IMAGENET_INDEX"]
