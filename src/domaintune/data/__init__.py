"""Built-in data plugins and the readers, splitting, caching and batching they share."""
