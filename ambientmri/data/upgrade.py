"""Upgrade a version-1 (dense) store to the compact version 2, without the source files.

``ambientmri upgrade-store OLD_STORE --out NEW_STORE`` (or ``python -m ambientmri.data.upgrade
OLD_STORE NEW_STORE``) writes a new store folder; ``OLD_STORE`` is only read. The conversion
re-encodes what the old store holds (no ESPIRiT, no source files), so it takes seconds where
``prepare`` takes minutes; the new store has the same ``config_hash``, masks, measurements and
scales, and the coil maps in half precision (docs/data.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import h5py

from ambientmri.data.store import CorruptedStore
from ambientmri.data.store_format import write_volume
from ambientmri.errors import AmbientError, InputError
from ambientmri.outputs import refuse_overlap
from ambientmri.utils import atomic_dir, write_json_atomic

__all__ = ["upgrade_store"]


def upgrade_store(src: str | Path, dst: str | Path) -> Path:
    """Write a version-2 copy of the store ``src`` to the new folder ``dst`` (atomically).

    Raises:
        InputError: ``src`` is not a store, or holds no version-1 volume.
        FileExistsError: ``dst`` exists and is not an empty folder (nothing is changed).
    """
    src, dst = Path(src), Path(dst)
    old = CorruptedStore(src)
    if all(int(e.get("version", 1)) == 2 for e in old.volumes):
        raise InputError(src, "is already a version-2 store; nothing to upgrade")
    refuse_overlap(dst, [src], what="upgraded store")
    with atomic_dir(dst) as tmp:
        (tmp / "volumes").mkdir()
        for v, entry in enumerate(old.volumes):
            reader = old._file(v)
            columns = {key: list(array) for key, array in reader.dense().items()}
            with h5py.File(tmp / entry["file"], "w") as f:
                write_volume(f, columns, 2)
                for key, value in reader.file.attrs.items():
                    if key != "store_version":
                        f.attrs[key] = value
        old.close()
        manifest = dict(old.manifest, version=2, volumes=[dict(e, version=2) for e in old.volumes])
        manifest["upgraded_from_version"] = int(old.manifest.get("version", 1))
        manifest["source_root_relative"] = os.path.relpath(manifest["source_root"], dst.resolve())
        write_json_atomic(tmp / "manifest.json", manifest)
    return dst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ambientmri.data.upgrade", description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path, help="the version-1 store (only read)")
    parser.add_argument("out", type=Path, help="the new version-2 store folder")
    args = parser.parse_args(argv)
    try:
        out = upgrade_store(args.store, args.out)
    except (AmbientError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"store {out}: version 2, {len(CorruptedStore(out))} slice(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
