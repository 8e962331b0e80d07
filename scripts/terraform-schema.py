#!/usr/bin/env python3
"""Checks every .tf file under terraform/ against the Google provider's own schema, offline.

`terraform validate` needs the provider binary, which cannot be fetched here. The npm package
@cdktf/provider-google carries the provider's whole schema in its .jsii metadata (16.x: provider
6.50.0). This reads it and fails on an unknown resource or data source type, an unknown
attribute or nested block, or a missing required attribute or block.

Usage: terraform-schema.py JSII_FILE TF_DIR [PROVIDER_VERSION [BETA_JSII_FILE]]   (needs
python-hcl2, which checkov brings). With PROVIDER_VERSION, a `required_providers` google (or
google-beta) range that excludes it is a problem too. BETA_JSII_FILE is the schema of the
google-beta provider (@cdktf/provider-google-beta, same version): a block with
`provider = google-beta` is checked against it, every other against the GA schema, so a
beta-only resource without the beta provider is an unknown type.
"""
import json
import pathlib
import re
import sys

import hcl2

META = {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"}
LINK = re.compile(r"docs/(resources|data-sources)/([a-z0-9_]+)(?:#([a-z0-9_]+))?")


def snake(name):
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


class Schema:
    def __init__(self, jsii_path):
        jsii = json.loads(pathlib.Path(jsii_path).read_text())
        self.types = jsii["types"]
        self.roots = {}  # ("resource"|"data", "google_x") -> fqn of its Config interface
        for fqn, kind in self.types.items():
            summary = kind.get("docs", {}).get("summary", "")
            if kind.get("kind") != "class" or not summary.startswith("Represents a {@link"):
                continue
            match = LINK.search(summary)
            if not match:
                continue
            block = "resource" if match.group(1) == "resources" else "data"
            # The GA package links docs/resources/pubsub_topic, the beta one google_pubsub_topic.
            name = match.group(2) if match.group(2).startswith("google_") else "google_" + match.group(2)
            config = fqn + "Config"
            if config in self.types:
                self.roots[(block, name)] = config

    def fields(self, fqn):
        """tf name -> (required, nested fqn or None) for a Config or block interface."""
        out = {}
        kind = self.types[fqn]
        for prop in kind.get("properties", []):
            docs = prop.get("docs", {})
            text = docs.get("remarks", "") + docs.get("summary", "")
            match = LINK.search(text)
            name = match.group(3) if match and match.group(3) else snake(prop["name"])
            out[name] = (not prop.get("optional", False), self.nested(prop["type"]))
        return out

    def nested(self, type_ref):
        """The block interface behind a property type, if it is a block."""
        if "fqn" in type_ref:
            fqn = type_ref["fqn"]
            return fqn if fqn.startswith("@cdktf/provider-google.") and self.types[fqn]["kind"] == "interface" else None
        if "collection" in type_ref:
            return self.nested(type_ref["collection"]["elementtype"])
        if "union" in type_ref:
            for option in type_ref["union"]["types"]:
                found = self.nested(option)
                if found:
                    return found
        return None


def check_body(schema, fqn, body, where, problems):
    fields = schema.fields(fqn)
    present = set()
    for key, value in body.items():
        if key in META or key.startswith("__"):
            continue
        if key == "dynamic":
            for dynamic in value:
                for label, spec in dynamic.items():
                    present.add(label)
                    if label not in fields or fields[label][1] is None:
                        problems.append(f"{where}: dynamic block '{label}' is not a nested block here")
                        continue
                    for content in spec.get("content", []):
                        check_body(schema, fields[label][1], content, f"{where}.{label}", problems)
            continue
        present.add(key)
        if key not in fields:
            problems.append(f"{where}: unknown attribute or block '{key}'")
            continue
        nested = fields[key][1]
        if nested and isinstance(value, list) and all(isinstance(v, dict) for v in value):
            for item in value:
                check_body(schema, nested, item, f"{where}.{key}", problems)
    for name, (required, _) in fields.items():
        if required and name not in present:
            problems.append(f"{where}: required '{name}' is missing")


def version_tuple(text):
    return tuple(int(part) for part in text.strip().split("."))


def allows(constraint, version):
    """Whether a Terraform version constraint (`>= 6.14, < 8`) admits `version`."""
    for clause in constraint.split(","):
        match = re.fullmatch(r"\s*(>=|<=|!=|~>|=|>|<)?\s*([0-9.]+)\s*", clause)
        if not match:
            return False
        operator, bound = match.group(1) or "=", match.group(2)
        have, want = version_tuple(version), version_tuple(bound)
        width = max(len(have), len(want))
        have, padded = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        ok = {
            ">=": have >= padded, "<=": have <= padded, ">": have > padded, "<": have < padded,
            "=": have == padded, "!=": have != padded,
            "~>": have >= padded and have[: len(want) - 1] == want[: len(want) - 1],
        }[operator]
        if not ok:
            return False
    return True


def check_versions(document, path, version, problems):
    for terraform in document.get("terraform", []):
        for providers in terraform.get("required_providers", []):
            for name in ("google", "google-beta"):
                declared = providers.get(name)
                for entry in declared if isinstance(declared, list) else [declared] if declared else []:
                    if not allows(entry.get("version", ""), version):
                        problems.append(f"{path}: {name} provider '{entry.get('version')}' excludes the checked schema {version}")


def uses_beta(body):
    """Whether a block names the google-beta provider (`provider = google-beta`)."""
    provider = body.get("provider")
    provider = provider[0] if isinstance(provider, list) and provider else provider
    return isinstance(provider, str) and provider.strip("${}").split(".")[0] == "google-beta"


def main():
    schema = Schema(sys.argv[1])
    version = sys.argv[3] if len(sys.argv) > 3 else ""
    beta = Schema(sys.argv[4]) if len(sys.argv) > 4 else None
    problems = []
    files = sorted(pathlib.Path(sys.argv[2]).rglob("*.tf"))
    checked = 0
    for path in files:
        with path.open() as handle:
            document = hcl2.load(handle)
        if version:
            check_versions(document, path, version, problems)
        for block in ("resource", "data"):
            for entry in document.get(block, []):
                for type_name, instances in entry.items():
                    if not type_name.startswith("google"):
                        continue
                    for instance_name, body in instances.items():
                        where = f"{path}: {type_name}.{instance_name}"
                        which = beta if uses_beta(body) else schema
                        if which is None:
                            problems.append(f"{where}: uses google-beta, but no beta schema was given")
                            continue
                        root = which.roots.get((block, type_name))
                        if root is None:
                            provider = "google-beta" if which is beta else "google"
                            problems.append(f"{path}: unknown {block} type '{type_name}' in the {provider} provider")
                            continue
                        checked += 1
                        check_body(which, root, body, where, problems)
    for problem in problems:
        print(problem)
    print(f"terraform-schema: {checked} resources and data sources in {len(files)} files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
