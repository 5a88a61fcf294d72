#!/usr/bin/env python3
"""Checks that Cargo.toml's `rust-version` is at least what every locked dependency declares.

A dependency that needs a newer Rust than keyward says it needs makes `rust-version` false; this
fails `make lint` naming it. (keyward's own code is checked by the toolchain CI builds with, which
may be newer: the declared minimum is only as true as the dependencies' own declarations.)
"""
import json
import subprocess
import sys


def version(text):
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    root_id = metadata["resolve"]["root"]
    packages = {package["id"]: package for package in metadata["packages"]}
    root = packages[root_id]
    declared = root.get("rust_version")
    if not declared:
        sys.exit("Cargo.toml declares no rust-version")
    needed = [
        (version(package["rust_version"]), package["name"], package["version"])
        for package in packages.values()
        if package["id"] != root_id and package.get("rust_version")
    ]
    too_new = [entry for entry in needed if entry[0] > version(declared)]
    if too_new:
        for wants, name, at in sorted(too_new, reverse=True):
            print(f"{name} {at} needs Rust {'.'.join(map(str, wants))}", file=sys.stderr)
        sys.exit(f"rust-version = \"{declared}\" is too old for the locked dependencies above")
    newest = max(needed)[0] if needed else version(declared)
    print(f"rust-version {declared}: every locked dependency needs at most {'.'.join(map(str, newest))}")


if __name__ == "__main__":
    main()
