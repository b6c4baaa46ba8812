"""Build a switchable network, slice every width, and check the slices against it.

python examples/slice_in_python.py
"""

import torch

from sfsc_deploy.models import build, checkpoint
from sfsc_deploy.models.slicing import save_sliced, slice_error, slice_model
from sfsc_deploy.perf.complexity import width_report


def main() -> None:
    torch.manual_seed(0)
    net = build(
        "resnet18",
        widths=[0.25, 0.5, 0.75],
        feature_dim=256,
        num_classes=500,
        width_mult=0.5,
        input_size=(128, 64),
    ).eval()
    x = torch.randn(4, 3, 128, 64)
    for stats in width_report(net):
        twin = slice_model(net, stats.width)
        print(
            f"width {stats.width:g}: {stats.params:,} params ({stats.param_ratio:.3f}), "
            f"{stats.macs:,} MACs ({stats.mac_ratio:.3f}), "
            f"max |sliced - switchable| = {slice_error(net, twin, stats.width, x):.1e}"
        )
    checkpoint.save(net, "example.safetensors")
    save_sliced(
        slice_model(net, 0.25),
        net.config,
        0.25,
        "example-w025",
        force=True,
        family_id=checkpoint.family_id(net),
    )
    print("wrote example.safetensors and example-w025/")


if __name__ == "__main__":
    main()
