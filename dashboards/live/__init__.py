"""The live local dashboard: a read-only HTTP backend over OpenSearch and a browser frontend."""
