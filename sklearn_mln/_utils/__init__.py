"""Shared helpers below every wing: input checks, the archive file format and atomic
writes, the restricted unpickler, provenance and device names."""
