"""Weight sharing is real only if a narrow width feeds every shared weight the same channel as the
full width does: what a layer reads at width γ must be the leading part of what it reads at 1.0."""

import pytest
import torch

from sfsc_deploy.switchable.layers import SwitchableBatchNorm, SwitchableConv2d, SwitchableLinear
from tests.conftest import ARCH_NAMES, INPUT, tiny


def _tag_channels(net: torch.nn.Module) -> list:
    """Every conv emits a fixed code per output channel (the same at every width), and every BN is
    the identity: a layer's input then says which producer channels reached it, not their values."""
    handles = []
    for index, module in enumerate(m for m in net.modules() if isinstance(m, SwitchableConv2d)):
        codes = 0.1 + 0.1 * torch.rand(module.weight.shape[0], generator=torch.Generator().manual_seed(index))

        def hook(mod, inputs, output, codes=codes):
            return codes[: output.shape[1]].view(1, -1, 1, 1).expand_as(output).clone()

        handles.append(module.register_forward_hook(hook))
    for module in net.modules():
        if isinstance(module, SwitchableBatchNorm):
            for bn in module.bn.values():
                bn.reset_parameters()
    return handles


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_narrow_widths_read_the_leading_channels_of_the_full_width(arch):
    net = tiny(arch)
    _tag_channels(net)
    layers = [m for m in net.modules() if isinstance(m, SwitchableConv2d | SwitchableLinear)]
    seen: dict[float, list[torch.Tensor]] = {}
    x = torch.rand(1, 3, *INPUT)
    for width in (1.0, 0.5, 0.25):
        inputs: list[torch.Tensor] = []
        handles = [
            m.register_forward_pre_hook(lambda mod, a, inputs=inputs: inputs.append(a[0].detach()))
            for m in layers
        ]
        with torch.no_grad(), net.at_width(width):
            net(x)
        for h in handles:
            h.remove()
        seen[width] = inputs
    for width in (0.5, 0.25):
        for i, (narrow, full) in enumerate(zip(seen[width], seen[1.0], strict=True)):
            c = narrow.shape[1]
            assert torch.allclose(narrow, full[:, :c], rtol=0, atol=1e-6), (
                f"{arch}: layer {i} ({type(layers[i]).__name__}) reads other channels at width {width}"
            )
