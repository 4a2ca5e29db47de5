"""Layer blobs from uncompressed tars: diff ID and compressed blob in one pass."""

import os
import uuid

from berth.image.content import ContentStore
from berth.oci import digest as dg
from berth.oci import image as oi

CHUNK = 1 << 20


def _gzip_compressor():
    try:
        from isal import isal_zlib

        return isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)  # 31: gzip wrapper
    except ImportError:
        import zlib

        return zlib.compressobj(1, zlib.DEFLATED, 31)


def store_layer(content: ContentStore, tar_path: str, compress: bool, tmp: str):
    """Store the tar at `tar_path` as a layer blob; return a LayerBlob."""
    from berth.image.service import LayerBlob

    diff = dg.hasher()
    with open(tar_path, "rb") as src, content.writer(f"layer-{uuid.uuid4().hex}") as w:
        comp = _gzip_compressor() if compress else None
        while chunk := src.read(CHUNK):
            diff.update(chunk)
            w.write(comp.compress(chunk) if comp else chunk)
        if comp:
            w.write(comp.flush())
        size = w.offset
        blob = w.commit()
    media_type = oi.OCI_LAYER_GZIP if compress else oi.OCI_LAYER
    del tmp
    return LayerBlob(blob, media_type, size, dg.from_hash(diff))


def file_size(path: str) -> int:
    return os.stat(path).st_size
