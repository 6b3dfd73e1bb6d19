"""The rules of the house that imports can show (docs/architecture.md, "Layers").

- `app/core` knows no domain: it imports nothing from `app.modules`, `app.api`,
  `app.client_api` or the MCP server.
- `app/modules/agent` (the runner and the prompt) knows no domain either.
- A domain package uses another only through its services (`service`, and `reports`
  where a domain has read-only reports) or its schemas: never its models, repository,
  routes or tools. The entity types a service hands out (a `BusinessProfile`, a `User`)
  are imported from that service module, where other domains need them in signatures.

`KNOWN_CROSSINGS` lists the crossings that remain, each waiting for the move named
beside it; a new crossing fails here, and so does one that is gone but still listed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app"
MODULES = APP / "modules"
ENGINE = "agent"  # not a domain: what domains use to talk to the model
PUBLIC = {"service", "reports", "schemas"}

# (importing file, imported module): why it is still here.
KNOWN_CROSSINGS: dict[tuple[str, str], str] = {
    ("chat/repository.py", "app.modules.users.models"): "the admins' usage report joins "
    "the users table for each row's email",
    ("gamification/repository.py", "app.modules.business.models"): "a business's points "
    "and level are columns of its row; this repository is the one writer of the two",
}


def imported_modules(path: Path) -> set[str]:
    """Every absolute `app.` module a file imports, at any depth (also inside functions
    and `TYPE_CHECKING` blocks)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("app."))
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("app.")
        ):
            found.add(node.module or "")
    return found


def python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "migrations" not in p.parts)


def test_core_knows_no_domain() -> None:
    outside = ("app.modules", "app.api", "app.client_api", "app.mcp_server", "app.main")
    offending = {
        f"{path.relative_to(APP)} imports {module}"
        for path in python_files(APP / "core")
        for module in imported_modules(path)
        if module.startswith(outside)
    }
    assert not offending


def test_the_agent_knows_no_domain() -> None:
    offending = {
        f"{path.relative_to(MODULES)} imports {module}"
        for path in python_files(MODULES / ENGINE)
        for module in imported_modules(path)
        if module.startswith("app.modules.") and module.split(".")[2] != ENGINE
    }
    assert not offending


def crossings() -> dict[tuple[str, str], str]:
    """(file, module) for each import of another domain's non-public module."""
    found: dict[tuple[str, str], str] = {}
    for path in python_files(MODULES):
        package = path.relative_to(MODULES).parts[0]
        if package == ENGINE or path.parent == MODULES:
            continue
        for module in imported_modules(path):
            parts = module.split(".")
            if len(parts) < 3 or parts[1] != "modules":
                continue
            other = parts[2]
            if other in (package, ENGINE):
                continue
            if len(parts) == 3 or parts[3] not in PUBLIC:
                found[(str(path.relative_to(MODULES)), module)] = module
    return found


def test_domains_meet_only_through_services_and_schemas() -> None:
    new = sorted(set(crossings()) - set(KNOWN_CROSSINGS))
    assert not new, f"import the other domain's service or schemas instead: {new}"


def test_the_known_crossings_are_still_there() -> None:
    gone = sorted(set(KNOWN_CROSSINGS) - set(crossings()))
    assert not gone, f"moved: take them out of KNOWN_CROSSINGS: {gone}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "from app.modules.business.models import BusinessProfile",
            {"app.modules.business.models"},
        ),
        ("def f():\n    import app.modules.chat.repository", {"app.modules.chat.repository"}),
        ("from . import models", set()),
    ],
)
def test_imports_are_found_wherever_they_are(
    tmp_path: Path, source: str, expected: set[str]
) -> None:
    path = tmp_path / "m.py"
    path.write_text(source)
    assert imported_modules(path) == expected
