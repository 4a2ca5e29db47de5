"""OCI models: runtime-spec config, image-spec, distribution. No I/O here."""
