"""docs/architecture.md maps every module; exporters/ stays independent; the CLI starts without torch."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def modules(package: str) -> list[str]:
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / package).rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    )


def test_every_module_is_listed_in_the_architecture_map():
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = [m for m in modules("sfsc_deploy") + modules("exporters") if f"`{m}`" not in text]
    assert not missing, f"add these modules to docs/architecture.md: {missing}"


def test_exporters_import_nothing_from_sfsc_deploy():
    for path in (ROOT / "exporters").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] == "sfsc_deploy" for n in names), f"{path} imports {names}"


def test_help_and_plan_import_no_torch():
    code = (
        "import sys\n"
        "from sfsc_deploy.cli import app\n"
        "from sfsc_deploy.perf.device_table import load_table, plan_width\n"
        "from sfsc_deploy.evaluation.report import load_matrix_report\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_arch_names_list_exactly_the_architectures_built():
    from sfsc_deploy.models.architectures import ARCHS
    from sfsc_deploy.models.config import ARCH_NAMES

    assert tuple(ARCHS) == ARCH_NAMES


def test_tests_mirror_the_package_layout():
    """A test file sits in the folder of the subpackage it tests; only project-wide checks sit at the top."""
    packages = {p.name for p in (ROOT / "sfsc_deploy").iterdir() if (p / "__init__.py").exists()}
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= packages | {"exporters"}, folders - packages
    top = sorted(p.name for p in (ROOT / "tests").glob("test_*.py"))
    assert top == ["test_architecture.py", "test_readme.py", "test_robustness_doc.py"], top


def test_library_and_benchmarks_never_import_tests():
    for package in ("sfsc_deploy", "exporters", "benchmarks"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module:
                    assert node.module.split(".")[0] != "tests", f"{path} imports {node.module}"
