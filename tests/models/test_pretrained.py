"""ImageNet weights with the real torchvision and timm key names, mapped into the switchable network.

The module names below are those of torchvision's ``resnet18``, ``resnet50``, ``mobilenet_v2`` and
``shufflenet_v2_x1_0`` and timm's ``mobilenetv2_100`` (timm's ResNets use torchvision's names; timm
has no ShuffleNetV2), written out in each model's module order: a conv has ``.weight``, a BatchNorm
``.weight .bias .running_mean .running_var .num_batches_tracked``. Shapes come from this project's
full-width network where the architectures coincide (paired in module order); ``REAL_SHAPES`` pins
some of them, and the ImageNet classifiers, to the libraries' own shapes.
"""

import pickle

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from sfsc_deploy.errors import SfscError
from sfsc_deploy.models import build
from sfsc_deploy.models.pretrained import PretrainedKeysError, PretrainedReport, load_pretrained, parse_init
from sfsc_deploy.models.slicing import slice_model
from sfsc_deploy.switchable.layers import SwitchableBatchNorm, SwitchableConv2d

RESNET18 = """
conv1 bn1
layer1.0.conv1 layer1.0.bn1 layer1.0.conv2 layer1.0.bn2
layer1.1.conv1 layer1.1.bn1 layer1.1.conv2 layer1.1.bn2
layer2.0.conv1 layer2.0.bn1 layer2.0.conv2 layer2.0.bn2 layer2.0.downsample.0 layer2.0.downsample.1
layer2.1.conv1 layer2.1.bn1 layer2.1.conv2 layer2.1.bn2
layer3.0.conv1 layer3.0.bn1 layer3.0.conv2 layer3.0.bn2 layer3.0.downsample.0 layer3.0.downsample.1
layer3.1.conv1 layer3.1.bn1 layer3.1.conv2 layer3.1.bn2
layer4.0.conv1 layer4.0.bn1 layer4.0.conv2 layer4.0.bn2 layer4.0.downsample.0 layer4.0.downsample.1
layer4.1.conv1 layer4.1.bn1 layer4.1.conv2 layer4.1.bn2
"""
RESNET50 = """
conv1 bn1
layer1.0.conv1 layer1.0.bn1 layer1.0.conv2 layer1.0.bn2
layer1.0.conv3 layer1.0.bn3 layer1.0.downsample.0 layer1.0.downsample.1
layer1.1.conv1 layer1.1.bn1 layer1.1.conv2 layer1.1.bn2 layer1.1.conv3 layer1.1.bn3
layer1.2.conv1 layer1.2.bn1 layer1.2.conv2 layer1.2.bn2 layer1.2.conv3 layer1.2.bn3
layer2.0.conv1 layer2.0.bn1 layer2.0.conv2 layer2.0.bn2
layer2.0.conv3 layer2.0.bn3 layer2.0.downsample.0 layer2.0.downsample.1
layer2.1.conv1 layer2.1.bn1 layer2.1.conv2 layer2.1.bn2 layer2.1.conv3 layer2.1.bn3
layer2.2.conv1 layer2.2.bn1 layer2.2.conv2 layer2.2.bn2 layer2.2.conv3 layer2.2.bn3
layer2.3.conv1 layer2.3.bn1 layer2.3.conv2 layer2.3.bn2 layer2.3.conv3 layer2.3.bn3
layer3.0.conv1 layer3.0.bn1 layer3.0.conv2 layer3.0.bn2
layer3.0.conv3 layer3.0.bn3 layer3.0.downsample.0 layer3.0.downsample.1
layer3.1.conv1 layer3.1.bn1 layer3.1.conv2 layer3.1.bn2 layer3.1.conv3 layer3.1.bn3
layer3.2.conv1 layer3.2.bn1 layer3.2.conv2 layer3.2.bn2 layer3.2.conv3 layer3.2.bn3
layer3.3.conv1 layer3.3.bn1 layer3.3.conv2 layer3.3.bn2 layer3.3.conv3 layer3.3.bn3
layer3.4.conv1 layer3.4.bn1 layer3.4.conv2 layer3.4.bn2 layer3.4.conv3 layer3.4.bn3
layer3.5.conv1 layer3.5.bn1 layer3.5.conv2 layer3.5.bn2 layer3.5.conv3 layer3.5.bn3
layer4.0.conv1 layer4.0.bn1 layer4.0.conv2 layer4.0.bn2
layer4.0.conv3 layer4.0.bn3 layer4.0.downsample.0 layer4.0.downsample.1
layer4.1.conv1 layer4.1.bn1 layer4.1.conv2 layer4.1.bn2 layer4.1.conv3 layer4.1.bn3
layer4.2.conv1 layer4.2.bn1 layer4.2.conv2 layer4.2.bn2 layer4.2.conv3 layer4.2.bn3
"""
MOBILENET_V2_TORCHVISION = """
features.0.0 features.0.1
features.1.conv.0.0 features.1.conv.0.1 features.1.conv.1 features.1.conv.2
features.2.conv.0.0 features.2.conv.0.1 features.2.conv.1.0
features.2.conv.1.1 features.2.conv.2 features.2.conv.3
features.3.conv.0.0 features.3.conv.0.1 features.3.conv.1.0
features.3.conv.1.1 features.3.conv.2 features.3.conv.3
features.4.conv.0.0 features.4.conv.0.1 features.4.conv.1.0
features.4.conv.1.1 features.4.conv.2 features.4.conv.3
features.5.conv.0.0 features.5.conv.0.1 features.5.conv.1.0
features.5.conv.1.1 features.5.conv.2 features.5.conv.3
features.6.conv.0.0 features.6.conv.0.1 features.6.conv.1.0
features.6.conv.1.1 features.6.conv.2 features.6.conv.3
features.7.conv.0.0 features.7.conv.0.1 features.7.conv.1.0
features.7.conv.1.1 features.7.conv.2 features.7.conv.3
features.8.conv.0.0 features.8.conv.0.1 features.8.conv.1.0
features.8.conv.1.1 features.8.conv.2 features.8.conv.3
features.9.conv.0.0 features.9.conv.0.1 features.9.conv.1.0
features.9.conv.1.1 features.9.conv.2 features.9.conv.3
features.10.conv.0.0 features.10.conv.0.1 features.10.conv.1.0
features.10.conv.1.1 features.10.conv.2 features.10.conv.3
features.11.conv.0.0 features.11.conv.0.1 features.11.conv.1.0
features.11.conv.1.1 features.11.conv.2 features.11.conv.3
features.12.conv.0.0 features.12.conv.0.1 features.12.conv.1.0
features.12.conv.1.1 features.12.conv.2 features.12.conv.3
features.13.conv.0.0 features.13.conv.0.1 features.13.conv.1.0
features.13.conv.1.1 features.13.conv.2 features.13.conv.3
features.14.conv.0.0 features.14.conv.0.1 features.14.conv.1.0
features.14.conv.1.1 features.14.conv.2 features.14.conv.3
features.15.conv.0.0 features.15.conv.0.1 features.15.conv.1.0
features.15.conv.1.1 features.15.conv.2 features.15.conv.3
features.16.conv.0.0 features.16.conv.0.1 features.16.conv.1.0
features.16.conv.1.1 features.16.conv.2 features.16.conv.3
features.17.conv.0.0 features.17.conv.0.1 features.17.conv.1.0
features.17.conv.1.1 features.17.conv.2 features.17.conv.3
features.18.0 features.18.1
"""
MOBILENET_V2_TIMM = """
conv_stem bn1
blocks.0.0.conv_dw blocks.0.0.bn1 blocks.0.0.conv_pw blocks.0.0.bn2
blocks.1.0.conv_pw blocks.1.0.bn1 blocks.1.0.conv_dw
blocks.1.0.bn2 blocks.1.0.conv_pwl blocks.1.0.bn3
blocks.1.1.conv_pw blocks.1.1.bn1 blocks.1.1.conv_dw
blocks.1.1.bn2 blocks.1.1.conv_pwl blocks.1.1.bn3
blocks.2.0.conv_pw blocks.2.0.bn1 blocks.2.0.conv_dw
blocks.2.0.bn2 blocks.2.0.conv_pwl blocks.2.0.bn3
blocks.2.1.conv_pw blocks.2.1.bn1 blocks.2.1.conv_dw
blocks.2.1.bn2 blocks.2.1.conv_pwl blocks.2.1.bn3
blocks.2.2.conv_pw blocks.2.2.bn1 blocks.2.2.conv_dw
blocks.2.2.bn2 blocks.2.2.conv_pwl blocks.2.2.bn3
blocks.3.0.conv_pw blocks.3.0.bn1 blocks.3.0.conv_dw
blocks.3.0.bn2 blocks.3.0.conv_pwl blocks.3.0.bn3
blocks.3.1.conv_pw blocks.3.1.bn1 blocks.3.1.conv_dw
blocks.3.1.bn2 blocks.3.1.conv_pwl blocks.3.1.bn3
blocks.3.2.conv_pw blocks.3.2.bn1 blocks.3.2.conv_dw
blocks.3.2.bn2 blocks.3.2.conv_pwl blocks.3.2.bn3
blocks.3.3.conv_pw blocks.3.3.bn1 blocks.3.3.conv_dw
blocks.3.3.bn2 blocks.3.3.conv_pwl blocks.3.3.bn3
blocks.4.0.conv_pw blocks.4.0.bn1 blocks.4.0.conv_dw
blocks.4.0.bn2 blocks.4.0.conv_pwl blocks.4.0.bn3
blocks.4.1.conv_pw blocks.4.1.bn1 blocks.4.1.conv_dw
blocks.4.1.bn2 blocks.4.1.conv_pwl blocks.4.1.bn3
blocks.4.2.conv_pw blocks.4.2.bn1 blocks.4.2.conv_dw
blocks.4.2.bn2 blocks.4.2.conv_pwl blocks.4.2.bn3
blocks.5.0.conv_pw blocks.5.0.bn1 blocks.5.0.conv_dw
blocks.5.0.bn2 blocks.5.0.conv_pwl blocks.5.0.bn3
blocks.5.1.conv_pw blocks.5.1.bn1 blocks.5.1.conv_dw
blocks.5.1.bn2 blocks.5.1.conv_pwl blocks.5.1.bn3
blocks.5.2.conv_pw blocks.5.2.bn1 blocks.5.2.conv_dw
blocks.5.2.bn2 blocks.5.2.conv_pwl blocks.5.2.bn3
blocks.6.0.conv_pw blocks.6.0.bn1 blocks.6.0.conv_dw
blocks.6.0.bn2 blocks.6.0.conv_pwl blocks.6.0.bn3
conv_head bn2
"""
SHUFFLENET_V2_X1_0 = """
conv1.0 conv1.1
stage2.0.branch1.0 stage2.0.branch1.1 stage2.0.branch1.2 stage2.0.branch1.3 stage2.0.branch2.0
stage2.0.branch2.1 stage2.0.branch2.3 stage2.0.branch2.4 stage2.0.branch2.5 stage2.0.branch2.6
stage2.1.branch2.0 stage2.1.branch2.1 stage2.1.branch2.3
stage2.1.branch2.4 stage2.1.branch2.5 stage2.1.branch2.6
stage2.2.branch2.0 stage2.2.branch2.1 stage2.2.branch2.3
stage2.2.branch2.4 stage2.2.branch2.5 stage2.2.branch2.6
stage2.3.branch2.0 stage2.3.branch2.1 stage2.3.branch2.3
stage2.3.branch2.4 stage2.3.branch2.5 stage2.3.branch2.6
stage3.0.branch1.0 stage3.0.branch1.1 stage3.0.branch1.2 stage3.0.branch1.3 stage3.0.branch2.0
stage3.0.branch2.1 stage3.0.branch2.3 stage3.0.branch2.4 stage3.0.branch2.5 stage3.0.branch2.6
stage3.1.branch2.0 stage3.1.branch2.1 stage3.1.branch2.3
stage3.1.branch2.4 stage3.1.branch2.5 stage3.1.branch2.6
stage3.2.branch2.0 stage3.2.branch2.1 stage3.2.branch2.3
stage3.2.branch2.4 stage3.2.branch2.5 stage3.2.branch2.6
stage3.3.branch2.0 stage3.3.branch2.1 stage3.3.branch2.3
stage3.3.branch2.4 stage3.3.branch2.5 stage3.3.branch2.6
stage3.4.branch2.0 stage3.4.branch2.1 stage3.4.branch2.3
stage3.4.branch2.4 stage3.4.branch2.5 stage3.4.branch2.6
stage3.5.branch2.0 stage3.5.branch2.1 stage3.5.branch2.3
stage3.5.branch2.4 stage3.5.branch2.5 stage3.5.branch2.6
stage3.6.branch2.0 stage3.6.branch2.1 stage3.6.branch2.3
stage3.6.branch2.4 stage3.6.branch2.5 stage3.6.branch2.6
stage3.7.branch2.0 stage3.7.branch2.1 stage3.7.branch2.3
stage3.7.branch2.4 stage3.7.branch2.5 stage3.7.branch2.6
stage4.0.branch1.0 stage4.0.branch1.1 stage4.0.branch1.2 stage4.0.branch1.3 stage4.0.branch2.0
stage4.0.branch2.1 stage4.0.branch2.3 stage4.0.branch2.4 stage4.0.branch2.5 stage4.0.branch2.6
stage4.1.branch2.0 stage4.1.branch2.1 stage4.1.branch2.3
stage4.1.branch2.4 stage4.1.branch2.5 stage4.1.branch2.6
stage4.2.branch2.0 stage4.2.branch2.1 stage4.2.branch2.3
stage4.2.branch2.4 stage4.2.branch2.5 stage4.2.branch2.6
stage4.3.branch2.0 stage4.3.branch2.1 stage4.3.branch2.3
stage4.3.branch2.4 stage4.3.branch2.5 stage4.3.branch2.6
conv5.0 conv5.1
"""

CLASSIFIERS = {
    ("resnet18", "torchvision"): {"fc.weight": (1000, 512), "fc.bias": (1000,)},
    ("resnet18", "timm"): {"fc.weight": (1000, 512), "fc.bias": (1000,)},
    ("resnet50", "torchvision"): {"fc.weight": (1000, 2048), "fc.bias": (1000,)},
    ("mobilenet_v2", "torchvision"): {"classifier.1.weight": (1000, 1280), "classifier.1.bias": (1000,)},
    ("mobilenet_v2", "timm"): {"classifier.weight": (1000, 1280), "classifier.bias": (1000,)},
    ("shufflenet_v2", "torchvision"): {"fc.weight": (1000, 1024), "fc.bias": (1000,)},
}
MODULES = {
    ("resnet18", "torchvision"): RESNET18,
    ("resnet18", "timm"): RESNET18,
    ("resnet50", "torchvision"): RESNET50,
    ("mobilenet_v2", "torchvision"): MOBILENET_V2_TORCHVISION,
    ("mobilenet_v2", "timm"): MOBILENET_V2_TIMM,
    ("shufflenet_v2", "torchvision"): SHUFFLENET_V2_X1_0,
}
# shapes from the libraries' model definitions, not from this project's network
REAL_SHAPES = {
    "resnet18": {
        "conv1.weight": (64, 3, 7, 7),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "layer4.1.conv2.weight": (512, 512, 3, 3),
        "layer4.1.bn2.running_var": (512,),
    },
    "resnet50": {
        "layer1.0.conv3.weight": (256, 64, 1, 1),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer4.0.downsample.0.weight": (2048, 1024, 1, 1),
        "layer4.2.conv2.weight": (512, 512, 3, 3),
        "layer4.2.bn3.bias": (2048,),
    },
    "mobilenet_v2": {
        "features.0.0.weight": (32, 3, 3, 3),
        "features.1.conv.0.0.weight": (32, 1, 3, 3),
        "features.1.conv.1.weight": (16, 32, 1, 1),
        "features.14.conv.1.0.weight": (576, 1, 3, 3),
        "features.17.conv.2.weight": (320, 960, 1, 1),
        "features.18.0.weight": (1280, 320, 1, 1),
        "blocks.0.0.conv_dw.weight": (32, 1, 3, 3),
        "blocks.5.0.conv_pw.weight": (576, 96, 1, 1),
        "blocks.6.0.conv_pwl.weight": (320, 960, 1, 1),
        "conv_head.weight": (1280, 320, 1, 1),
        "bn2.running_mean": (1280,),
    },
    "shufflenet_v2": {
        "conv1.0.weight": (24, 3, 3, 3),
        "stage2.0.branch1.0.weight": (24, 1, 3, 3),
        "stage2.0.branch1.2.weight": (58, 24, 1, 1),
        "stage2.0.branch2.0.weight": (58, 24, 1, 1),
        "stage2.1.branch2.0.weight": (58, 58, 1, 1),
        "stage3.0.branch2.0.weight": (116, 116, 1, 1),
        "stage4.3.branch2.3.weight": (232, 1, 3, 3),
        "conv5.0.weight": (1024, 464, 1, 1),
    },
}
CASES = sorted(MODULES)
BN_KEYS = ("weight", "bias", "running_mean", "running_var")
INPUT = (64, 32)


def network(arch, widths=(0.25, 0.5), **options):
    """The project's switchable network at base width 1.0 (last stride 2: the ImageNet model's strides)."""
    torch.manual_seed(0)
    options = {"input_size": INPUT, "last_stride": 2, **options}
    return build(arch, list(widths), feature_dim=16, num_classes=5, **options).eval()


def backbone_layers(net):
    """The backbone's convs and BatchNorms in module order."""
    return [
        (path, m)
        for path, m in net.backbone.named_modules()
        if isinstance(m, SwitchableConv2d | SwitchableBatchNorm)
    ]


def pairs(arch, layout, net):
    """(pretrained module name, module here), paired in module order."""
    names = MODULES[arch, layout].split()
    layers = backbone_layers(net)
    assert len(names) == len(layers), f"{arch} {layout}: {len(names)} names for {len(layers)} layers"
    return [(name, module) for name, (_, module) in zip(names, layers, strict=True)]


def imagenet_state(arch, layout, net, seed=0):
    """A state dict with the library's key names and shapes, filled with random values."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in pairs(arch, layout, net):
        if isinstance(module, SwitchableConv2d):
            state[f"{name}.weight"] = torch.randn(module.weight.shape, generator=g) * 0.2
        else:
            n = module.spec.ch.full
            state[f"{name}.weight"] = torch.rand(n, generator=g) + 0.5
            state[f"{name}.bias"] = torch.randn(n, generator=g) * 0.1
            state[f"{name}.running_mean"] = torch.randn(n, generator=g) * 0.1
            state[f"{name}.running_var"] = torch.rand(n, generator=g) + 0.5
            state[f"{name}.num_batches_tracked"] = torch.tensor(12345)
    for key, shape in CLASSIFIERS[arch, layout].items():
        state[key] = torch.randn(shape, generator=g)
    return state


def assert_mapped(arch, layout, net, state):
    """Every conv holds its tensor; every width's BN the leading slice of its BN."""
    for name, module in pairs(arch, layout, net):
        if isinstance(module, SwitchableConv2d):
            assert torch.equal(module.weight, state[f"{name}.weight"]), name
            continue
        assert sorted(module.bn) == ["0_25", "0_5", "1"], name
        for bn in module.bn.values():
            n = bn.num_features
            for key in BN_KEYS:
                assert torch.equal(getattr(bn, key), state[f"{name}.{key}"][:n]), f"{name}.{key}"


# ---------------------------------------------------------------------------------------- mapping
@pytest.mark.parametrize("arch,layout", CASES)
def test_every_conv_and_batchnorm_gets_its_tensor_and_narrow_widths_their_slices(arch, layout):
    net = network(arch)
    state = imagenet_state(arch, layout, net)
    for key, shape in REAL_SHAPES[arch].items():
        if key in state:
            assert tuple(state[key].shape) == shape, key
    head = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("backbone.")}
    report = load_pretrained(net, state)
    assert_mapped(arch, layout, net, state)
    # narrow widths really are slices: the conv runs its leading [:c_out, :c_in] block
    convs = [m for _, m in pairs(arch, layout, net) if isinstance(m, SwitchableConv2d)]
    weight, _, _ = convs[-1]._tensors(0.25)
    assert weight.shape[0] < convs[-1].weight.shape[0]
    # the re-id head and the identity classifier are new: untouched
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in head.items())
    classifier = tuple(CLASSIFIERS[arch, layout])
    counters = sorted(k for k in state if k.endswith("num_batches_tracked"))
    expected_layout = "torchvision" if arch.startswith("resnet") else layout  # timm ResNets: same names
    assert report == PretrainedReport(
        "<state dict>",
        arch,
        expected_layout,
        True,
        len(state) - len(classifier) - len(counters),
        tuple(sorted(classifier)) + tuple(counters),
    )
    assert report.classifier == tuple(sorted(classifier))
    assert "not used: ImageNet classifier" in report.summary()


def test_timm_resnets_can_be_named_explicitly():
    net = network("resnet18")
    state = imagenet_state("resnet18", "timm", net)
    report = load_pretrained(net, state, layout="timm")
    assert (report.layout, report.detected) == ("timm", False)
    assert_mapped("resnet18", "timm", net, state)


def test_timm_and_torchvision_mobilenet_v2_give_the_same_network():
    """The two layouts' key lists, zipped in module order, name the same tensors."""
    tv, timm = network("mobilenet_v2"), network("mobilenet_v2")
    state = imagenet_state("mobilenet_v2", "torchvision", tv)
    renamed = {}
    for a, b in zip(MOBILENET_V2_TORCHVISION.split(), MOBILENET_V2_TIMM.split(), strict=True):
        for key, value in state.items():
            if key.rsplit(".", 1)[0] == a:
                renamed[f"{b}.{key.rsplit('.', 1)[1]}"] = value
    renamed.update(classifier_weight := {"classifier.weight": state["classifier.1.weight"]})
    renamed["classifier.bias"] = state["classifier.1.bias"]
    assert len(renamed) == len(state) and classifier_weight
    assert load_pretrained(tv, state).layout == "torchvision"
    assert load_pretrained(timm, renamed).layout == "timm"
    assert_mapped("mobilenet_v2", "timm", timm, renamed)
    for (k, a), b in zip(tv.state_dict().items(), timm.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


# ------------------------------------------------- full width = the pretrained backbone, computed by hand
def _conv(sd, name, x, stride=1, depthwise=False):
    w = sd[f"{name}.weight"]
    return F.conv2d(x, w, None, stride, w.shape[-1] // 2, 1, x.shape[1] if depthwise else 1)


def _bn(sd, name, x):
    s = {k: sd[f"{name}.{k}"] for k in BN_KEYS}
    return F.batch_norm(x, s["running_mean"], s["running_var"], s["weight"], s["bias"], False, 0.0, 1e-5)


def resnet_reference(sd, x, depths, bottleneck):
    """torchvision's ResNet up to layer4, from its state dict."""
    x = F.max_pool2d(F.relu(_bn(sd, "bn1", _conv(sd, "conv1", x, 2))), 3, 2, 1)
    for s, depth in enumerate(depths, 1):
        for b in range(depth):
            p, stride = f"layer{s}.{b}", 2 if s > 1 and b == 0 else 1
            identity = x
            if f"{p}.downsample.0.weight" in sd:
                identity = _bn(sd, f"{p}.downsample.1", _conv(sd, f"{p}.downsample.0", x, stride))
            if bottleneck:  # torchvision strides the 3×3 (ResNet v1.5), as timm does
                out = F.relu(_bn(sd, f"{p}.bn1", _conv(sd, f"{p}.conv1", x)))
                out = F.relu(_bn(sd, f"{p}.bn2", _conv(sd, f"{p}.conv2", out, stride)))
                out = _bn(sd, f"{p}.bn3", _conv(sd, f"{p}.conv3", out))
            else:
                out = F.relu(_bn(sd, f"{p}.bn1", _conv(sd, f"{p}.conv1", x, stride)))
                out = _bn(sd, f"{p}.bn2", _conv(sd, f"{p}.conv2", out))
            x = F.relu(out + identity)
    return x


# (expansion, channels, repeats, stride): the MobileNetV2 paper's table
MOBILENET_V2_TABLE = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def mobilenet_v2_reference(sd, x):
    """torchvision's MobileNetV2 ``features``, from its state dict."""
    x = F.relu6(_bn(sd, "features.0.1", _conv(sd, "features.0.0", x, 2)))
    i, cin = 1, 32
    for t, c, n, s in MOBILENET_V2_TABLE:
        for j in range(n):
            p, stride, h = f"features.{i}.conv", s if j == 0 else 1, x
            if t != 1:
                h = F.relu6(_bn(sd, f"{p}.0.1", _conv(sd, f"{p}.0.0", h)))
            dw, pw, pw_bn = (f"{p}.1", f"{p}.2", f"{p}.3") if t != 1 else (f"{p}.0", f"{p}.1", f"{p}.2")
            h = F.relu6(_bn(sd, f"{dw}.1", _conv(sd, f"{dw}.0", h, stride, depthwise=True)))
            h = _bn(sd, pw_bn, _conv(sd, pw, h))
            x = x + h if stride == 1 and cin == c else h
            i, cin = i + 1, c
    return F.relu6(_bn(sd, "features.18.1", _conv(sd, "features.18.0", x)))


def shufflenet_v2_reference(sd, x, split="nested"):
    """torchvision's ShuffleNetV2 x1.0 up to conv5, from its state dict; ``split="half"`` is
    torchvision's own channel split, ``"nested"`` this project's (models/shufflenet_v2.py)."""
    x = F.max_pool2d(F.relu(_bn(sd, "conv1.1", _conv(sd, "conv1.0", x, 2))), 3, 2, 1)
    for stage, repeats in ((2, 4), (3, 8), (4, 4)):
        for u in range(repeats):
            p = f"stage{stage}.{u}"
            if u == 0:
                kept = _bn(sd, f"{p}.branch1.1", _conv(sd, f"{p}.branch1.0", x, 2, depthwise=True))
                kept = F.relu(_bn(sd, f"{p}.branch1.3", _conv(sd, f"{p}.branch1.2", kept)))
                branch = x
            elif split == "half":
                kept, branch = x.chunk(2, dim=1)
            else:
                c = x.shape[1]
                kept = x[:, [k for k in range(c) if k % 4 in (0, 3)]]
                branch = x[:, [k for k in range(c) if k % 4 in (1, 2)]]
            h = F.relu(_bn(sd, f"{p}.branch2.1", _conv(sd, f"{p}.branch2.0", branch)))
            h = _bn(sd, f"{p}.branch2.4", _conv(sd, f"{p}.branch2.3", h, 2 if u == 0 else 1, depthwise=True))
            h = F.relu(_bn(sd, f"{p}.branch2.6", _conv(sd, f"{p}.branch2.5", h)))
            out = torch.cat((kept, h), dim=1)
            n, c, hh, ww = out.shape
            x = out.view(n, 2, c // 2, hh, ww).transpose(1, 2).reshape(n, c, hh, ww)  # channel shuffle
    return F.relu(_bn(sd, "conv5.1", _conv(sd, "conv5.0", x)))


REFERENCES = {
    "resnet18": lambda sd, x: resnet_reference(sd, x, (2, 2, 2, 2), bottleneck=False),
    "resnet50": lambda sd, x: resnet_reference(sd, x, (3, 4, 6, 3), bottleneck=True),
    "mobilenet_v2": mobilenet_v2_reference,
    "shufflenet_v2": shufflenet_v2_reference,
}


@pytest.mark.parametrize("arch", sorted(REFERENCES))
@torch.no_grad()
def test_full_width_backbone_computes_the_pretrained_backbone_exactly(arch):
    net = network(arch)
    state = imagenet_state(arch, "torchvision", net)
    load_pretrained(net, state)
    x = torch.randn(2, 3, *INPUT, generator=torch.Generator().manual_seed(3))
    expected = REFERENCES[arch](state, x)
    assert expected.abs().mean() > 0.01  # a signal, not a vanished one
    with net.at_width(1.0):
        assert torch.equal(net.backbone(x), expected)
    assert torch.equal(slice_model(net, 1.0).backbone(x), expected)


@torch.no_grad()
def test_shufflenet_differs_from_torchvision_after_each_stages_first_unit():
    """The nested split (so that narrow widths nest) is not torchvision's half split: with the same
    weights the backbone computes another function, so the weights are a start, as documented."""
    net = network("shufflenet_v2")
    state = imagenet_state("shufflenet_v2", "torchvision", net)
    load_pretrained(net, state)
    x = torch.randn(2, 3, *INPUT, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(net.backbone(x), shufflenet_v2_reference(state, x, split="half"))


@torch.no_grad()
def test_narrow_width_runs_the_leading_slices():
    """Width 0.5 of the loaded net = the reference with every tensor cut to its leading slice."""
    net = network("resnet18", widths=(0.5,), divisor=8)
    state = imagenet_state("resnet18", "torchvision", net)
    load_pretrained(net, state)
    sliced = {}
    for name, module in pairs("resnet18", "torchvision", net):
        if isinstance(module, SwitchableConv2d):
            c_in, c_out, _ = module.spec.shape_at(0.5, module.divisor)
            sliced[f"{name}.weight"] = state[f"{name}.weight"][:c_out, :c_in]
        else:
            n = module.spec.ch.at(0.5, module.divisor)
            sliced.update({f"{name}.{k}": state[f"{name}.{k}"][:n] for k in BN_KEYS})
    x = torch.randn(2, 3, *INPUT, generator=torch.Generator().manual_seed(4))
    with net.at_width(0.5):
        assert torch.equal(net.backbone(x), resnet_reference(sliced, x, (2, 2, 2, 2), bottleneck=False))


# ------------------------------------------------------------------------------------------- files
@pytest.mark.parametrize("kind", ["safetensors", "pth"])
def test_files_load_and_the_report_names_the_file(kind, tmp_path):
    net = network("shufflenet_v2")
    state = imagenet_state("shufflenet_v2", "torchvision", net)
    path = tmp_path / f"shufflenet_v2_x1_0.{kind}"
    if kind == "safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)  # what torchvision's hub files are: a zip of plain tensors
    report = load_pretrained(net, path)
    assert report.source == str(path) and report.layout == "torchvision"
    assert_mapped("shufflenet_v2", "torchvision", net, state)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    zipped, raw = tmp_path / "evil.pth", tmp_path / "evil.pkl"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _Exploit(marker)}, zipped)
    raw.write_bytes(pickle.dumps({"conv1.weight": _Exploit(marker)}, protocol=2))
    net = network("resnet18")
    for path in (zipped, raw):
        with pytest.raises(SfscError, match="weights_only=True and never unpickles"):
            load_pretrained(net, path)
    assert not marker.exists()


def test_files_that_are_not_a_flat_state_dict_are_one_clear_error(tmp_path):
    net = network("resnet18")
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": imagenet_state("resnet18", "torchvision", net), "epoch": 90}, wrapped)
    with pytest.raises(SfscError, match=r"not a flat state dict: 'state_dict' \(dict\), 'epoch' \(int\)"):
        load_pretrained(net, wrapped)
    with pytest.raises(SfscError, match="not found"):
        load_pretrained(net, tmp_path / "nowhere.pth")
    broken = tmp_path / "broken.safetensors"
    save_file({"conv1.weight": torch.zeros(3)}, str(broken))
    broken.write_bytes(broken.read_bytes()[:-4])
    with pytest.raises(SfscError, match="damaged safetensors"):
        load_pretrained(net, broken)


# ------------------------------------------------------------------------------------------ errors
def test_a_width_multiplier_other_than_1_is_one_error():
    net = network("resnet18", width_mult=0.5)
    with pytest.raises(SfscError, match=r"base width multiplier 1\.0.*got width_mult 0\.5"):
        load_pretrained(net, {"conv1.weight": torch.zeros(1)})


def test_missing_and_unknown_keys_are_listed():
    net = network("resnet18")
    state = imagenet_state("resnet18", "torchvision", net)
    del state["layer3.1.conv2.weight"], state["layer4.0.bn1.running_var"]
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    with pytest.raises(PretrainedKeysError) as caught:
        load_pretrained(net, state)
    message = str(caught.value)
    assert "missing 2 key(s): layer3.1.conv2.weight, layer4.0.bn1.running_var" in message
    assert "unknown 1 key(s): layer5.0.conv1.weight" in message
    assert caught.value.missing == ["layer3.1.conv2.weight", "layer4.0.bn1.running_var"]
    assert caught.value.unknown == ["layer5.0.conv1.weight"]
    # nothing was copied: the check comes before any tensor is written
    assert not torch.equal(net.backbone.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_a_long_list_is_cut_in_the_message_but_whole_in_the_error():
    net = network("resnet18")
    state = {f"module.{k}": v for k, v in imagenet_state("resnet18", "torchvision", net).items()}
    with pytest.raises(
        PretrainedKeysError, match=r"… and \d+ more.*starts with 'module\.': save the inner"
    ) as caught:
        load_pretrained(net, state, layout="torchvision")
    assert len(caught.value.missing) == 40 + 20 * 3  # 20 convs, 20 BNs × 4 tensors
    assert len(caught.value.unknown) == len(state)  # the classifier and BN counters too: prefixed


def test_a_shape_mismatch_names_the_key():
    net = network("mobilenet_v2")
    state = imagenet_state("mobilenet_v2", "torchvision", net)
    state["features.7.conv.1.0.weight"] = torch.zeros(192, 1, 5, 5)
    with pytest.raises(
        SfscError, match=r"features\.7\.conv\.1\.0\.weight has shape \(192, 1, 5, 5\).*\(192, 1, 3, 3\)"
    ):
        load_pretrained(net, state)


def test_a_file_of_another_architecture_or_no_known_layout_is_named():
    resnet, mobilenet = network("resnet18"), network("mobilenet_v2")
    with pytest.raises(
        SfscError, match="looks like ImageNet mobilenet_v2 weights .torchvision layout., not resnet18"
    ):
        load_pretrained(resnet, imagenet_state("mobilenet_v2", "torchvision", mobilenet))
    with pytest.raises(SfscError, match="looks like ImageNet resnet50 weights"):
        load_pretrained(resnet, {"conv1.weight": torch.zeros(1), "layer1.0.conv3.weight": torch.zeros(1)})
    with pytest.raises(SfscError, match="cannot tell the layout.*its first keys: a.weight"):
        load_pretrained(resnet, {"a.weight": torch.zeros(1)})


def test_timm_has_no_shufflenet_and_unknown_layouts_are_refused():
    net = network("shufflenet_v2")
    with pytest.raises(SfscError, match="timm has no shufflenet_v2 weights"):
        load_pretrained(net, {}, layout="timm")
    with pytest.raises(SfscError, match="unknown weights layout 'keras'"):
        load_pretrained(net, {}, layout="keras")


def test_non_finite_or_integer_tensors_are_refused():
    net = network("resnet18")
    state = imagenet_state("resnet18", "torchvision", net)
    state["layer2.1.bn1.running_var"][3] = float("nan")
    with pytest.raises(SfscError, match=r"layer2\.1\.bn1\.running_var holds NaN or inf"):
        load_pretrained(net, state)
    state = imagenet_state("resnet18", "torchvision", net)
    state["conv1.weight"] = state["conv1.weight"].to(torch.int64)
    with pytest.raises(SfscError, match=r"conv1\.weight holds torch\.int64"):
        load_pretrained(net, state)


def test_init_values():
    assert parse_init("imagenet:w/resnet18.pth") == (None, "w/resnet18.pth")
    assert parse_init("imagenet-timm:C:\\w\\m.safetensors") == ("timm", "C:\\w\\m.safetensors")
    assert parse_init("imagenet-torchvision:x") == ("torchvision", "x")
    for bad in ("imagenet:", "resnet18.pth", "coco:x.pth", "imagenet-keras:x"):
        with pytest.raises(SfscError, match="imagenet:PATH"):
            parse_init(bad)
