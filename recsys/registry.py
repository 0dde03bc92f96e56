"""The model registry: a directory of immutable, sha256-verified model versions and a `CURRENT` pointer.
Training publishes versions here; serving loads the promoted one (verified) and hot-swaps on promote or rollback."""
from __future__ import annotations

import contextlib
import difflib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MANIFEST_SCHEMA = 1
MANIFEST = "manifest.json"
PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".pkl", ".pickle", ".joblib", ".ckpt"})
_ID_RE = re.compile(r"^v(\d{4,})-(\d{8}T\d{6}Z)-([0-9a-f]{6})$")
_REQUIRED = {"manifest_schema": int, "version": str, "created_at": str, "training_config": dict,
             "feature_spec": dict, "data_range": dict, "metrics": dict, "files": dict}


class RegistryError(Exception):
    """Base class of every registry error; messages are one line."""


class VersionNotFound(RegistryError):
    """No version matches the given id or prefix, or a prefix matches several."""


class RegistryIntegrityError(RegistryError):
    """A version's files or manifest differ from what was published."""


def default_registry_dir() -> Path:
    """NEWSREC_REGISTRY_DIR, else <repo>/var/registry (git-ignored)."""
    if env := os.environ.get("NEWSREC_REGISTRY_DIR"):
        return Path(env)
    return Path(__file__).resolve().parents[1] / "var" / "registry"


@dataclass(frozen=True)
class ModelVersion:
    """A published version: its directory and its parsed manifest (treat the dict as read-only)."""

    version: str
    path: Path
    manifest: dict[str, Any] = field(compare=False, repr=False)

    created_at = property(lambda self: self.manifest["created_at"], doc="UTC ISO time of publish.")
    parent = property(lambda self: self.manifest["parent"], doc="The version this one was trained from, or None.")
    metrics = property(lambda self: self.manifest["metrics"])
    training_config = property(lambda self: self.manifest["training_config"])
    feature_spec = property(lambda self: self.manifest["feature_spec"], doc="What serving must build for it.")
    data_range = property(lambda self: self.manifest["data_range"])
    files = property(lambda self: self.manifest["files"], doc="{posix path: {sha256, bytes}}, manifest excluded.")


@dataclass(frozen=True)
class LoadedVersion(ModelVersion):
    """A version whose every file was just checked against the manifest's sha256 (files are at `path / name`)."""


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _looks_pickled(path: Path) -> bool:
    """Pickle protocol 2-5 header, or a torch.save zip (which holds data.pkl), whatever the file is named."""
    with path.open("rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        with contextlib.suppress(zipfile.BadZipFile), zipfile.ZipFile(path) as zf:
            return any(n.endswith(".pkl") for n in zf.namelist())
    return head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")


def _to_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{what} is not strict JSON: {exc}") from None


def _write_synced(path: Path, text: str, mode: str = "w") -> None:
    with path.open(mode, encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _relative_files(directory: Path) -> dict[str, Path]:
    return {p.relative_to(directory).as_posix(): p for p in sorted(directory.rglob("*")) if not p.is_dir()}


class ModelRegistry:
    """Versions in `<root>/versions/<id>/`; `CURRENT` names the promoted one; `history.jsonl` logs every move.
    A directory under versions/ is always complete (renamed into place after its files and manifest are written);
    its files are chmod 0o444. `.ids/<vNNNN>` reserves a counter: os.mkdir is the cross-process lock.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"

    def publish(self, src_dir: Path | str, *, training_config: dict[str, Any], feature_spec: dict[str, Any],
                data_range: dict[str, Any], metrics: dict[str, Any], parent: str | None = None,
                notes: str | None = None, kind: str | None = None, name: str | None = None) -> ModelVersion:
        """Copy every file of `src_dir` into a new immutable version; CURRENT does not move."""
        src = Path(src_dir)
        for label, value in (("training_config", training_config), ("feature_spec", feature_spec),
                             ("data_range", data_range), ("metrics", metrics)):
            if not isinstance(value, dict):
                raise RegistryError(f"{label} must be a dict, got {type(value).__name__}")
            _to_json(value, label)
        if not feature_spec:
            raise RegistryError("feature_spec is required: serving checks it can build the features a model expects")
        if not (files := _relative_files(src)):
            raise RegistryError(f"staging directory {src} is missing or holds no files")
        for rel, path in files.items():
            if not path.is_file():
                raise RegistryError(f"{rel} in {src} is not a regular file")
            if rel == MANIFEST:
                raise RegistryError(f"{src} must not contain {MANIFEST}: the registry writes it")
            if path.suffix.lower() in PICKLE_SUFFIXES or _looks_pickled(path):
                raise RegistryError(f"refusing {rel}: no pickle: save weights as safetensors (and models as ONNX)")
        parent_id = self.get(parent).version if parent is not None else None
        created = datetime.now(UTC).replace(microsecond=0)
        version = self._reserve_id(created)
        tmp = self.root / ".staging" / f"{version}.{os.getpid()}.tmp"
        tmp.mkdir(parents=True)
        try:
            listing = {}
            for rel, path in files.items():
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, tmp / rel)
                with (tmp / rel).open("rb") as f:
                    os.fsync(f.fileno())
                listing[rel] = {"sha256": sha256_file(tmp / rel), "bytes": (tmp / rel).stat().st_size}
            manifest = {"manifest_schema": MANIFEST_SCHEMA, "version": version, "created_at": created.isoformat(),
                        "parent": parent_id, "kind": kind, "name": name, "notes": notes,
                        "training_config": training_config, "feature_spec": feature_spec,
                        "data_range": data_range, "metrics": metrics, "files": listing}
            _write_synced(tmp / MANIFEST, _to_json(manifest, "manifest") + "\n")
            for rel in (*listing, MANIFEST):
                (tmp / rel).chmod(0o444)
            os.rename(tmp, self.versions_dir / version)  # atomic: readers see all of a version or none of it
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.get(version)

    def _reserve_id(self, created: datetime) -> str:
        ids_dir = self.root / ".ids"
        ids_dir.mkdir(parents=True, exist_ok=True)
        self.versions_dir.mkdir(exist_ok=True)
        taken = [int(m.group(1)) for p in (*ids_dir.iterdir(), *self.versions_dir.iterdir())
                 if (m := re.match(r"^v(\d{4,})", p.name))]
        counter = max(taken, default=0)
        while True:  # of two publishers racing for a counter, exactly one's mkdir succeeds; the other tries the next
            counter += 1
            with contextlib.suppress(FileExistsError):
                (ids_dir / f"v{counter:04d}").mkdir()
                return f"v{counter:04d}-{created:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"

    def list(self) -> list[ModelVersion]:
        """Every published version, oldest first (by counter)."""
        return [self.get(v) for v in self._ids()]

    def _ids(self) -> list[str]:
        self._require_root()
        names = [p.name for p in self.versions_dir.iterdir()] if self.versions_dir.is_dir() else []
        return sorted((n for n in names if _ID_RE.match(n)), key=lambda n: int(_ID_RE.match(n).group(1)))

    def resolve(self, version: str) -> str:
        """The full id for a full id or an unambiguous prefix (e.g. "v0003")."""
        if not isinstance(version, str) or not version:
            raise VersionNotFound(f"a version id must be a non-empty string, got {version!r}")
        ids = self._ids()
        matches = [version] if version in ids else [v for v in ids if v.startswith(version)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise VersionNotFound(f"version prefix {version!r} is ambiguous: it matches {len(matches)} versions "
                                  f"({', '.join(matches[:4])}{', ...' if len(matches) > 4 else ''})")
        near = sorted(ids, key=lambda v: -difflib.SequenceMatcher(None, version, v[:len(version)]).ratio())[:3]
        raise VersionNotFound(f"no version {version!r} in {self.root} ({len(ids)} versions"
                              f"{'; nearest: ' + ', '.join(near) if near else ''})")

    def get(self, version: str) -> ModelVersion:
        """The version's manifest, parsed and checked for shape (not its files' hashes: see load)."""
        vid = self.resolve(version)
        try:
            manifest = json.loads((self.versions_dir / vid / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # missing, unreadable, not UTF-8, not JSON
            raise RegistryIntegrityError(f"version {vid}: cannot read {MANIFEST}: {exc}") from None
        _check_manifest(vid, manifest)
        return ModelVersion(vid, self.versions_dir / vid, manifest)

    def load(self, version: str | None = None) -> LoadedVersion:
        """Verify every file of `version` (default: current) against its manifest; loads no model."""
        if version is None and (version := self.current()) is None:
            raise RegistryError(f"no current version in {self.root}: promote one first")
        mv = self.get(version)
        on_disk = _relative_files(mv.path)
        on_disk.pop(MANIFEST, None)
        for rel, entry in sorted(mv.files.items()):
            if rel not in on_disk:
                raise RegistryIntegrityError(f"version {mv.version}: file {rel!r} listed in the manifest is missing")
            if (actual := sha256_file(on_disk[rel])) != entry["sha256"]:
                raise RegistryIntegrityError(f"version {mv.version}: file {rel!r} sha256 mismatch: expected "
                                             f"{entry['sha256'][:12]}, actual {actual[:12]}")
        if extra := sorted(set(on_disk) - set(mv.files)):
            raise RegistryIntegrityError(f"version {mv.version}: unlisted file {extra[0]!r} is not in the manifest"
                                         f"{f' (and {len(extra) - 1} more)' if len(extra) > 1 else ''}")
        return LoadedVersion(mv.version, mv.path, mv.manifest)

    def current(self) -> str | None:
        """The promoted version id, or None before the first promote."""
        path = self._require_root() / "CURRENT"
        return (path.read_text(encoding="utf-8").strip() or None) if path.exists() else None

    def promote(self, version: str) -> None:
        """Verify `version`, then point CURRENT at it; promoting the current version again changes nothing."""
        target = self.load(version).version
        with self._lock():
            if target != (previous := self.current()):
                self._move(target, previous, "promote")

    def rollback(self) -> str:
        """Point CURRENT at the version promoted before it (each call walks one further back); return its id."""
        with self._lock():
            stack, previous = self._promotion_stack(), self.current()
            if len(stack) < 2:
                why = f"{stack[0]} is the first promoted version" if stack else "no version was promoted"
                raise RegistryError(f"nothing to roll back to in {self.root}: {why}")
            target = self.load(stack[-2]).version
            self._move(target, previous, "rollback")
            return target

    def history(self) -> list[dict[str, Any]]:
        """Every promote/rollback, oldest first: {"at", "action", "version", "previous"}."""
        path = self._require_root() / "history.jsonl"
        try:
            lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
            return [json.loads(line) for line in lines if line.strip()]
        except ValueError as exc:
            raise RegistryIntegrityError(f"{path} is corrupt: {exc}") from None

    def _promotion_stack(self) -> list[str]:
        """Replay the history: a promote pushes, a rollback pops; the top is CURRENT, the next is where to go back."""
        stack: list[str] = []
        for entry in self.history():
            stack = [*stack, entry["version"]] if entry.get("action") == "promote" else stack[:-1]
        return stack

    def _require_root(self) -> Path:
        if not self.root.is_dir():
            raise RegistryError(f"no model registry at {self.root} (pass --registry or set NEWSREC_REGISTRY_DIR)")
        return self.root

    def _move(self, target: str, previous: str | None, action: str) -> None:
        # The log line lands first: after a crash between the two writes, rollback still knows every earlier version.
        entry = {"at": datetime.now(UTC).isoformat(), "action": action, "version": target, "previous": previous}
        _write_synced(self.root / "history.jsonl", json.dumps(entry) + "\n", mode="a")
        tmp = self.root / f".CURRENT.{os.getpid()}.tmp"
        _write_synced(tmp, target + "\n")
        os.replace(tmp, self.root / "CURRENT")  # atomic: a reader sees the old id or the new one

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialize promote/rollback across processes: each reads the history, then appends to it."""
        with (self._require_root() / ".lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes, on an exception too
            yield


def _check_manifest(vid: str, m: Any) -> None:
    if not isinstance(m, dict):
        raise RegistryIntegrityError(f"version {vid}: {MANIFEST} is not a JSON object")
    for key, typ in _REQUIRED.items():
        if not isinstance(m.get(key), typ):
            raise RegistryIntegrityError(f"version {vid}: manifest field {key!r} is missing or not a {typ.__name__}")
    if m["manifest_schema"] != MANIFEST_SCHEMA or m["version"] != vid:
        raise RegistryIntegrityError(f"version {vid}: manifest has schema {m['manifest_schema']} (supported: "
                                     f"{MANIFEST_SCHEMA}) and version {m['version']!r}")
    for rel, entry in m["files"].items():
        if rel == MANIFEST or not rel or rel.startswith("/") or ".." in rel.split("/"):
            raise RegistryIntegrityError(f"version {vid}: manifest lists an invalid file path {rel!r}")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise RegistryIntegrityError(f"version {vid}: manifest entry for {rel!r} has no sha256")
