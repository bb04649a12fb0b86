"""Independent checks of keysd's generated OpenAPI document.

Reads one JSON object on standard input:
  {"mode": "document", "document": {...}}
      validate the document as OpenAPI 3.1 (openapi-spec-validator);
  {"mode": "responses", "document": {...}, "observations": [...]}
      check each observed response against the document: the operation of
      its route template and method, the status documented for it, and the
      body valid against that status's schema (jsonschema, draft 2020-12).
Prints one problem per line and exits 1 if there is any, 0 otherwise.
"""

import json
import sys

import jsonschema
from openapi_spec_validator import OpenAPIV31SpecValidator, validate


def check_document(document):
    try:
        validate(document, cls=OpenAPIV31SpecValidator)
    except Exception as error:  # the validator's own error types vary
        return [f"not a valid OpenAPI 3.1 document: {error}"]
    if document.get("openapi") != "3.1.0":
        return [f"openapi is {document.get('openapi')!r}, not '3.1.0'"]
    return []


def check_responses(document, observations):
    problems = []
    components = document.get("components", {})
    for seen in observations:
        where = f"{seen['method']} {seen['path']} -> {seen['status']}"
        item = document["paths"].get(seen["pattern"])
        if item is None:
            problems.append(f"{where}: template {seen['pattern']} is not documented")
            continue
        operation = item.get(seen["method"].lower())
        if operation is None:
            if seen["status"] != 405:
                problems.append(f"{where}: undocumented method answered other than 405")
            continue
        response = operation["responses"].get(str(seen["status"]))
        if response is None:
            problems.append(f"{where}: status not documented (documented: {sorted(operation['responses'])})")
            continue
        content = response.get("content")
        if not content:
            if seen["body"]:
                problems.append(f"{where}: documented without a body, answered {seen['body'][:200]!r}")
            continue
        content_type = (seen.get("content_type") or "").split(";")[0].strip()
        media = next((m for m in content if m.split(";")[0].strip() == content_type), None)
        if media is None:
            problems.append(f"{where}: content type {content_type!r} not documented ({sorted(content)})")
            continue
        if content_type != "application/json":
            continue
        try:
            body = json.loads(seen["body"])
        except ValueError as error:
            problems.append(f"{where}: body is not JSON: {error}")
            continue
        schema = {"allOf": [content[media]["schema"]], "components": components}
        validator = jsonschema.Draft202012Validator(schema)
        for error in validator.iter_errors(body):
            path = "/".join(str(part) for part in error.absolute_path)
            problems.append(f"{where}: body at /{path}: {error.message}")
    return problems


def main():
    request = json.load(sys.stdin)
    if request["mode"] == "document":
        problems = check_document(request["document"])
    else:
        problems = check_responses(request["document"], request["observations"])
    for problem in problems:
        print(problem)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
