"""What a node and its callers agree on beyond the .proto files."""
