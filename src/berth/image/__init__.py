"""Images: content store, registry client, layers, snapshots."""
