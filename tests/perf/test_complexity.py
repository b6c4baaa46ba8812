import torch

from sfsc_deploy.models.slicing import slice_model
from sfsc_deploy.perf.complexity import count_macs, count_params, width_report
from tests.conftest import tiny


def test_macs_of_a_conv_match_the_formula():
    conv = torch.nn.Conv2d(3, 16, 3, padding=1, bias=False)
    assert count_macs(conv.eval(), (10, 6)) == 16 * 3 * 9 * 10 * 6


def test_width_report_measures_the_sliced_models():
    net = tiny("mobilenet_v2")
    rows = width_report(net)
    assert [r.width for r in rows] == net.widths
    assert rows[-1].param_ratio == rows[-1].mac_ratio == 1.0
    assert all(a.macs < b.macs and a.params < b.params for a, b in zip(rows, rows[1:], strict=False))
    assert rows[0].params == count_params(slice_model(net, 0.25))
    assert rows[0].channels == net.backbone.out_channels.at(0.25, 4)
