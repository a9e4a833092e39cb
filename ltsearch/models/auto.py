"""``model.arch: auto`` (the default): the model a user of each dataset would pick.

| dataset | auto | why |
|---|---|---|
| ``digits``, ``synthetic`` | ``small_cnn`` | 8×8 images: the quickstart's tiny CNN |
| ``fashion_mnist`` | ``lenet`` | 28×28 grey images: a LeNet-style CNN (``benchmarks/fashion_models.py``) |
| ``cifar10``, ``cifar100`` | ``resnet32`` | the CIFAR-LT papers' backbone (LDAM-DRW, BBN, ...) |
| ``imagenet_lt`` | ``resnext50`` | ResNeXt-50 32×4d (Decoupling, Kang et al. 2020) |
| ``inat`` | ``resnet50`` | ResNet-50 (BBN, Decoupling on iNaturalist 2018) |

``auto`` is resolved before anything is built or hashed (``ltsearch.defaults``): the trial id, the
trials' ``arch`` column and ``config_json`` name the resolved model, so ``auto`` and the model it
stands for are one configuration. A dataset outside the table (a plugin) names its model explicitly,
or its plugin adds an entry: ``AUTO_ARCH["my_dataset"] = "resnet20"``.
"""

from __future__ import annotations

from ltsearch.errors import UserError

AUTO = "auto"
AUTO_ARCH: dict[str, str] = {
    "digits": "small_cnn", "synthetic": "small_cnn", "fashion_mnist": "lenet",
    "cifar10": "resnet32", "cifar100": "resnet32", "imagenet_lt": "resnext50", "inat": "resnet50",
}


def resolve_arch(arch: str, dataset: str) -> str:
    """``arch`` itself, or for ``auto`` the model of ``dataset`` in ``AUTO_ARCH``."""
    if arch != AUTO:
        return arch
    if dataset not in AUTO_ARCH:
        raise UserError(f"experiment.model.arch: auto has no model for dataset {dataset!r} (auto knows "
                        f"{', '.join(sorted(AUTO_ARCH))}); set experiment.model.arch, e.g. resnet32 or small_cnn")
    return AUTO_ARCH[dataset]
