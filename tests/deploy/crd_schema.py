"""Validates a custom resource offline against its CustomResourceDefinition's openAPIV3Schema,
strictly: a field the schema does not declare is an error, as a Kubernetes API server with
field validation "Strict" treats it, except under x-kubernetes-preserve-unknown-fields."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml


def load_crds(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the strict JSON schema of that served version."""
    schemas = {}
    for path in sorted(folder.glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)  # libyaml: the CRDs are large
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Closes every object schema that lists its properties, recursively."""
    if not isinstance(schema, dict):
        return schema
    for key in ("properties", "patternProperties"):
        for child in schema.get(key, {}).values():
            strict(child)
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            strict(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        for child in schema.get(key, []):
            strict(child)
    preserve = schema.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in schema and "additionalProperties" not in schema and not preserve:
        schema["additionalProperties"] = False
    return schema


def errors(document: dict[str, Any], schemas: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    key = (document.get("apiVersion", ""), document.get("kind", ""))
    if key not in schemas:
        return [f"no CRD serves {key[0]} {key[1]}"]
    validator = jsonschema.Draft7Validator(schemas[key])
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]
