"""The README's Deploy section stays true to the deployment files: every secret file
the Compose stack mounts is one its recipe makes, every variable the Compose files
read is documented, and each of the three ways has its copy-pasteable block."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
DEPLOY = README[README.index("## Deploy\n") : README.index("## CLI reference")]
COMPOSE = [REPO / "docker-compose.yml", REPO / "docker-compose.replicas.yml"]


def blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def test_the_three_ways_each_have_a_block() -> None:
    code = blocks(DEPLOY)
    assert any("pip install branchdb" in b and "branchdb serve" in b for b in code)
    assert any("docker-compose up -d" in b for b in code)
    assert any("-f docker-compose.replicas.yml up -d" in b for b in code)
    assert any("helm install branchdb charts/branchdb" in b for b in code)
    assert (REPO / "charts/branchdb/Chart.yaml").is_file()


def test_the_compose_recipe_makes_every_secret_the_stack_mounts() -> None:
    recipe = next(b for b in blocks(DEPLOY) if "docker-compose up -d" in b)
    made = set(re.findall(r"> (\w[\w.]*)", recipe))
    made |= set(re.findall(r"-out (\w[\w.]*)", recipe))
    mounted = set()
    for f in COMPOSE:
        mounted |= set(re.findall(r"/run/secrets/(\w[\w.]*)", f.read_text()))
    assert mounted and mounted <= made, mounted - made


def test_every_variable_the_compose_files_read_is_documented() -> None:
    read = set()
    for f in COMPOSE:
        read |= set(re.findall(r"\$\{(BRANCHDB_\w+)", f.read_text()))
    missing = {v for v in read if f"`{v}`" not in README}
    assert not missing, missing
