#!/usr/bin/env python3
"""Generates the typed layer of both SDKs from the platform's OpenAPI document.

    python3 sdks/generate.py           # rewrite the generated files from docs/openapi.json
    python3 sdks/generate.py --check   # exit 1 if any generated file differs (the SDK tests run this)

Writes, for Python, ``ai_hub/_models.py`` (one class per object schema, aliases for ids, enums and
unions) and ``ai_hub/_resources.py`` (sync and async resource classes, one method per operation,
its keyword arguments the request body's fields, query parameters and headers); for TypeScript,
``src/models.ts`` and ``src/resources.ts``, the same. Which operation becomes which method is the
table ``METHODS`` below: an operation of the document that is neither there nor in ``SKIPPED``
stops the generator, so an endpoint cannot land without its SDK method.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
OPENAPI = ROOT / "docs" / "openapi.json"
PREFIX = "/api/v1"

# operationId -> resource path and method (snake_case; TypeScript takes the camelCase form).
METHODS: Dict[str, str] = {
    "post_chat_completions": "chat.completions.create",
    "post_chat_stream": "chat.completions.stream",
    "get_chat_models": "chat.models.list",
    "get_models": "models.list",
    "get_organizations": "organizations.list",
    "post_organizations": "organizations.create",
    "get_organizations_id": "organizations.retrieve",
    "put_organizations_id": "organizations.update",
    "delete_organizations_id": "organizations.delete",
    "get_organizations_id_limits": "organizations.get_limits",
    "put_organizations_id_limits": "organizations.set_limits",
    "get_users": "users.list",
    "post_users": "users.create",
    "get_users_id": "users.retrieve",
    "post_users_id_roles": "users.assign_role",
    "delete_users_id_roles_role": "users.remove_role",
    "get_roles": "roles.list",
    "get_permissions": "permissions.list",
    "get_teams": "teams.list",
    "post_teams": "teams.create",
    "get_teams_id": "teams.retrieve",
    "put_teams_id": "teams.update",
    "post_teams_id_members": "teams.add_member",
    "delete_teams_id_members_user_id": "teams.remove_member",
    "get_api_keys": "api_keys.list",
    "post_api_keys": "api_keys.create",
    "get_api_keys_id": "api_keys.retrieve",
    "put_api_keys_id": "api_keys.update",
    "delete_api_keys_id": "api_keys.revoke",
    "get_api_keys_id_permissions": "api_keys.get_permissions",
    "put_api_keys_id_permissions": "api_keys.set_permissions",
    "get_api_keys_id_limits": "api_keys.get_limits",
    "put_api_keys_id_limits": "api_keys.set_limits",
    "get_billing_plans": "plans.list",
    "get_subscriptions": "subscriptions.list",
    "post_subscriptions": "subscriptions.create",
    "get_subscriptions_id": "subscriptions.retrieve",
    "put_subscriptions_id_upgrade": "subscriptions.upgrade",
    "put_subscriptions_id_downgrade": "subscriptions.downgrade",
    "delete_subscriptions_id_downgrade": "subscriptions.cancel_downgrade",
    "get_billing_invoices": "invoices.list",
    "get_billing_invoices_id": "invoices.retrieve",
    "post_billing_invoices_id_pay": "invoices.pay",
    "get_billing_usage": "usage.retrieve",
    "get_billing_usage_export": "usage.export",
    "get_organizations_id_sso": "organizations.get_sso",
    "put_organizations_id_sso": "organizations.set_sso",
    "delete_organizations_id_sso": "organizations.delete_sso",
    "get_audit_logs": "audit.logs.list",
    "get_audit_logs_id": "audit.logs.retrieve",
    "post_audit_logs_export": "audit.logs.export",
    "get_audit_exports_id": "audit.exports.retrieve",
    "get_audit_exports_id_download": "audit.exports.download",
    "get_audit_public_key": "audit.get_public_key",
    "get_audit_verify": "audit.verify",
    "get_audit_state": "audit.get_state",
    "post_audit_compliance_generate": "audit.compliance.generate",
    "get_audit_compliance": "audit.compliance.list",
    "get_audit_compliance_id": "audit.compliance.retrieve",
    "post_audit_gdpr_access": "audit.gdpr.access",
    "post_audit_gdpr_erasure": "audit.gdpr.erasure",
    "get_monitoring_health": "monitoring.health",
    "get_monitoring_metrics": "monitoring.metrics.list",
    "get_monitoring_metrics_id_data": "monitoring.metrics.data",
    "get_monitoring_alert_rules": "monitoring.alert_rules.list",
    "post_monitoring_alert_rules": "monitoring.alert_rules.create",
    "get_monitoring_alert_rules_id": "monitoring.alert_rules.retrieve",
    "put_monitoring_alert_rules_id": "monitoring.alert_rules.update",
    "delete_monitoring_alert_rules_id": "monitoring.alert_rules.delete",
    "get_monitoring_alerts": "monitoring.alerts.list",
    "get_monitoring_alerts_id": "monitoring.alerts.retrieve",
    "put_monitoring_alerts_id_acknowledge": "monitoring.alerts.acknowledge",
    "post_monitoring_metrics": "monitoring.metrics.create",
    "get_monitoring_metrics_id": "monitoring.metrics.retrieve",
    "delete_monitoring_metrics_id": "monitoring.metrics.delete",
    "post_monitoring_metrics_id_data": "monitoring.metrics.record",
    "get_monitoring_health_checks": "monitoring.checks.list",
    "post_monitoring_health_checks": "monitoring.checks.create",
    "get_monitoring_health_checks_id": "monitoring.checks.retrieve",
    "delete_monitoring_health_checks_id": "monitoring.checks.delete",
}

# Operations that are not the API an SDK user calls, and why.
SKIPPED: Dict[str, str] = {
    "healthz": "a probe for load balancers",
    "readyz": "a probe for load balancers",
    "metrics_text": "Prometheus scrapes it",
    "openapi_json": "the document itself",
    "post_billing_webhooks_payments": "called by a payment provider, HMAC-signed, not with a key",
}

# Each server-sent event of a chat stream carries one of these (ServerSentEvent's description).
STREAM_ITEM = "ChatCompletionChunk"


def ref_name(schema: Dict[str, Any]) -> Optional[str]:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[1] if ref else None


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def pascal(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[_.]", name))


def py_name(name: str) -> str:
    name = name.replace("-", "_").lower() if "-" in name else name
    return name + "_" if keyword.iskeyword(name) else name


def doc_lines(text: Optional[str], indent: str) -> List[str]:
    if not text:
        return []
    text = text.replace('"""', "'''").replace("\\", "\\\\")
    lines = text.strip().splitlines()
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    return [f'{indent}"""{lines[0]}'] + [f"{indent}{l}".rstrip() for l in lines[1:]] + [f'{indent}"""']


def ts_doc(text: Optional[str], indent: str) -> List[str]:
    if not text:
        return []
    lines = text.replace("*/", "*\\/").strip().splitlines()
    return [f"{indent}/**"] + [f"{indent} * {l}".rstrip() for l in lines] + [f"{indent} */"]


class Document:
    def __init__(self, openapi: Dict[str, Any]) -> None:
        self.schemas: Dict[str, Any] = openapi["components"]["schemas"]
        self.paths: Dict[str, Any] = openapi["paths"]
        self.pages: Dict[str, str] = {}  # List_X -> X
        for name, schema in self.schemas.items():
            if name.startswith("List_"):
                item = name[len("List_") :]
                inline = schema["properties"]["data"]["items"]
                if item not in self.schemas or inline != self.schemas[item]:
                    raise SystemExit(f"{name}'s items are not the schema {item}")
                self.pages[name] = item

    def kind(self, name: str) -> str:
        """class (an object with fields), extends (allOf: a class and more fields), alias."""
        schema = self.schemas[name]
        if name in self.pages:
            return "page"
        if "allOf" in schema:
            return "extends"
        if schema.get("type") == "object" and "properties" in schema:
            return "class"
        if schema.get("type") == "object":
            return "alias"
        return "alias"

    def is_object(self, name: str) -> bool:
        return self.kind(name) in ("class", "extends")

    def fields(self, name: str) -> Tuple[Dict[str, Any], List[str], Optional[str]]:
        """Own properties, required names, and the base class for allOf."""
        schema = self.schemas[name]
        if "allOf" in schema:
            base, extra = schema["allOf"]
            return extra.get("properties", {}), extra.get("required", []), ref_name(base)
        return schema.get("properties", {}), schema.get("required", []), None

    def all_required(self, name: str) -> List[str]:
        props, required, base = self.fields(name)
        return (self.all_required(base) if base else []) + list(required)

    def all_fields(self, name: str) -> Dict[str, Any]:
        props, _, base = self.fields(name)
        out = dict(self.all_fields(base)) if base else {}
        out.update(props)
        return out

    def operations(self) -> List[Dict[str, Any]]:
        found = {}
        for path, item in self.paths.items():
            for method, op in item.items():
                if method not in ("get", "post", "put", "delete", "patch"):
                    continue
                op_id = op["operationId"]
                if op_id in SKIPPED:
                    continue
                if op_id not in METHODS:
                    raise SystemExit(
                        f"{method.upper()} {path} ({op_id}) has no SDK method: name it in "
                        "METHODS of sdks/generate.py (or SKIPPED, with why), then run "
                        "python3 sdks/generate.py"
                    )
                found[op_id] = self.operation(method.upper(), path, op)
        missing = sorted(set(METHODS) - set(found))
        if missing:
            raise SystemExit(f"METHODS names operations the document no longer has: {missing}")
        return [found[op_id] for op_id in METHODS]

    def operation(self, method: str, path: str, op: Dict[str, Any]) -> Dict[str, Any]:
        if not path.startswith(PREFIX):
            raise SystemExit(f"{path} is not under {PREFIX}")
        resource, _, name = METHODS[op["operationId"]].rpartition(".")
        params: Dict[Tuple[str, str], Dict[str, Any]] = {}
        for p in op.get("parameters", []):
            params.setdefault((p["in"], p["name"]), p)
        path_params = re.findall(r"{(\w+)}", path)
        query = [p for (where, _), p in params.items() if where == "query"]
        headers = [p for (where, _), p in params.items() if where == "header"]
        body_ref = None
        content = op.get("requestBody", {}).get("content", {})
        if content:
            body_ref = ref_name(content["application/json"]["schema"])
        result, response, item = None, "empty", None
        for status in ("200", "201", "202"):
            content = op["responses"].get(status, {}).get("content")
            if not content:
                continue
            json_ref = ref_name(content.get("application/json", {}).get("schema", {}))
            if "text/event-stream" in content:
                response = "chat" if json_ref else "stream"
                result, item = json_ref, STREAM_ITEM
            elif json_ref in self.pages:
                response, result, item = "page", json_ref, self.pages[json_ref]
            elif json_ref:
                response, result = "json", json_ref
            else:
                response = "download"
            break
        return {
            "id": op["operationId"],
            "method": method,
            "path": path[len(PREFIX) :],
            "resource": resource,
            "name": name,
            "summary": op.get("summary") or op.get("description"),
            "path_params": path_params,
            "query": query,
            "headers": headers,
            "body": body_ref,
            "response": response,
            "result": result,
            "item": item,
        }


# ---------------------------------------------------------------------------------------------
# Python

PY_HEADER = '''# Generated by sdks/generate.py from docs/openapi.json: do not edit by hand.
# flake8: noqa
'''


def py_type(doc: Document, schema: Dict[str, Any], request: bool = False) -> str:
    name = ref_name(schema)
    if name:
        if request and doc.is_object(name):
            return "Mapping[str, Any]"
        return name
    if "oneOf" in schema:
        options = [o for o in schema["oneOf"] if o.get("type") != "null"]
        nullable = len(options) < len(schema["oneOf"])
        inner = [py_type(doc, o, request) for o in options]
        text = inner[0] if len(inner) == 1 else f"Union[{', '.join(inner)}]"
        return f"Optional[{text}]" if nullable else text
    kind = schema.get("type")
    if isinstance(kind, list):
        options = [k for k in kind if k != "null"]
        inner = py_type(doc, {**schema, "type": options[0]}, request)
        return f"Optional[{inner}]" if "null" in kind else inner
    if kind == "string":
        if "enum" in schema:
            return "Literal[" + ", ".join(json.dumps(v) for v in schema["enum"]) + "]"
        return "str"
    if kind == "integer":
        return "int"
    if kind == "number":
        return "float"
    if kind == "boolean":
        return "bool"
    if kind == "array":
        return f"List[{py_type(doc, schema.get('items', {}), request)}]"
    if kind == "object":
        return "Dict[str, Any]"
    return "Any"


def py_models(doc: Document) -> str:
    out = [PY_HEADER, '"""The platform\'s resources and request bodies, as docs/openapi.json defines them."""', ""]
    out += [
        "from __future__ import annotations",
        "",
        "from typing import Any, ClassVar, Dict, List, Literal, Optional, Tuple, Union",
        "",
        "from ._base import Model",
        "",
    ]
    names = [n for n in doc.schemas if doc.kind(n) != "page"]
    classes = [n for n in names if doc.is_object(n)]
    # Bases before the classes that extend them.
    ordered: List[str] = []
    def place(n: str) -> None:
        if n in ordered:
            return
        _, _, base = doc.fields(n)
        if base:
            place(base)
        ordered.append(n)
    for n in classes:
        place(n)
    for n in ordered:
        props, required, base = doc.fields(n)
        out += ["", f"class {n}({base or 'Model'}):"]
        out += doc_lines(doc.schemas[n].get("description"), "    ")
        out.append(f"    __required__: ClassVar[Tuple[str, ...]] = {tuple(doc.all_required(n))!r}")
        for field, schema in props.items():
            hint = py_type(doc, schema)
            if field not in required and not hint.startswith("Optional["):
                hint = f"Optional[{hint}]"
            out.append(f"    {py_name(field)}: {hint}")
        out.append("")
    out += ["", "# Ids, enums and unions."]
    for n in names:
        if doc.is_object(n):
            continue
        schema = doc.schemas[n]
        out.append(f"{n} = {py_type(doc, schema)}")
        if schema.get("description"):
            out.append(f"\"\"\"{schema['description'].splitlines()[0]}\"\"\"")
    exported = sorted(names)
    out += ["", "__all__ = ["] + [f'    "{n}",' for n in exported] + ["]", ""]
    return "\n".join(out)


def py_signature(doc: Document, op: Dict[str, Any], overload: Optional[str] = None) -> Tuple[List[str], Dict[str, str]]:
    """The parameters after self, and how each reaches the request (name -> python name)."""
    params = [f"{py_name(p)}: str" for p in op["path_params"]]
    params.append("*")
    body_fields: Dict[str, str] = {}
    if op["body"]:
        fields = doc.all_fields(op["body"])
        required = doc.all_required(op["body"])
        taken = set(op["path_params"])
        for field, schema in fields.items():
            if op["response"] == "stream" and field == "stream":
                continue
            name = py_name(field if field not in taken else "body_" + field)
            hint = py_type(doc, schema, request=True)
            if field == "stream" and overload == "stream":
                params.append(f"{name}: Literal[True]")
            elif field == "stream" and overload == "json":
                params.append(f"{name}: Optional[Literal[False]] = NOT_GIVEN")
            elif field == "stream" and overload == "impl":
                params.append(f"{name}: Optional[bool] = NOT_GIVEN")
            elif field in required:
                params.append(f"{name}: {hint}")
            else:
                if not hint.startswith("Optional["):
                    hint = f"Optional[{hint}]"
                params.append(f"{name}: {hint} = NOT_GIVEN")
            body_fields[field] = name
    for q in op["query"]:
        if op["response"] == "page" and q["name"] == "cursor":
            continue
        hint = "Optional[int]" if q["name"] == "limit" else "Optional[str]"
        params.append(f"{py_name(q['name'])}: {hint} = None")
    for h in op["headers"]:
        params.append(f"{py_name(h['name'])}: Optional[str] = None")
    if op["response"] == "download":
        params.insert(len(op["path_params"]), "file: FileTarget")
    params += ["extra_headers: Optional[Mapping[str, str]] = None", "timeout: Timeout = None"]
    return params, body_fields


def py_call_args(doc: Document, op: Dict[str, Any], body_fields: Dict[str, str]) -> List[str]:
    args = []
    path = re.sub(r"{(\w+)}", lambda m: "{path_segment(" + py_name(m.group(1)) + ")}", op["path"])
    args.append(f'f"{path}"' if "{" in path else f'"{path}"')
    if body_fields:
        pairs = ", ".join(f'"{wire}": {name}' for wire, name in body_fields.items())
        args.append(f"body=body({{{pairs}}})")
    query = [q for q in op["query"] if not (op["response"] == "page" and q["name"] == "cursor")]
    if query:
        pairs = ", ".join(f'"{q["name"]}": {py_name(q["name"])}' for q in query)
        args.append(f"query={{{pairs}}}")
    headers = ", ".join(f'"{h["name"]}": {py_name(h["name"])}' for h in op["headers"])
    args.append(f"headers={{{headers}, **(extra_headers or {{}})}}" if headers else "headers=extra_headers")
    args.append("timeout=timeout")
    return args


def py_method(doc: Document, op: Dict[str, Any], sync: bool) -> List[str]:
    kind = op["response"]
    stream_cls = "Stream" if sync else "AsyncStream"
    out: List[str] = []

    def emit(params: List[str], returns: str, is_async: bool, decorator: Optional[str], body_lines: List[str]) -> None:
        if decorator:
            out.append(f"    {decorator}")
        prefix = "async def" if is_async else "def"
        out.append(f"    {prefix} {op['name']}(")
        out.append("        self,")
        for p in params:
            out.append(f"        {p},")
        out.append(f"    ) -> {returns}:")
        out.extend(body_lines)
        out.append("")

    doc_ = doc_lines(f"{op['method']} {op['path']}: {op['summary'] or ''}".strip(), "        ")
    if kind == "chat":
        for variant, returns in (("stream", f"{stream_cls}[{op['item']}]"), ("json", op["result"])):
            params, _ = py_signature(doc, op, variant)
            emit(params, returns, not sync, "@overload", ["        ..."])
        params, fields = py_signature(doc, op, "impl")
        args = py_call_args(doc, op, fields)
        a = ", ".join(args)
        aw = "" if sync else "await "
        emit(
            params,
            f"Union[{op['result']}, {stream_cls}[{op['item']}]]",
            not sync,
            None,
            doc_
            + [
                "        if stream:",
                f'            return {aw}self._t.stream("{op["method"]}", {a}, cast={op["item"]})',
                f'        return {aw}self._t.request("{op["method"]}", {a}, cast={op["result"]})',
            ],
        )
        return out
    params, fields = py_signature(doc, op)
    a = ", ".join(py_call_args(doc, op, fields))
    if kind == "page":
        page = "SyncPage" if sync else "AsyncPager"
        emit(params, f"{page}[{op['item']}]", False, None, doc_ + [f"        return self._t.page({a}, cast={op['item']})"])
    elif kind == "stream":
        aw = "" if sync else "await "
        emit(params, f"{stream_cls}[{op['item']}]", not sync, None, doc_ + [f'        return {aw}self._t.stream("{op["method"]}", {a}, cast={op["item"]})'])
    elif kind == "download":
        aw = "" if sync else "await "
        note = doc_lines(
            f"{op['method']} {op['path']}: {op['summary'] or ''}\n"
            "Streams the body into ``file`` (a path or a binary file); returns the bytes written.",
            "        ",
        )
        emit(params, "int", not sync, None, note + [f"        return {aw}self._t.download({a}, file=file)"])
    else:
        result = op["result"] or "None"
        cast = f", cast={op['result']}" if op["result"] else ""
        aw = "" if sync else "await "
        emit(params, result, not sync, None, doc_ + [f'        return {aw}self._t.request("{op["method"]}", {a}{cast})'])
    return out


def resource_tree(ops: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """resource path -> {"ops": [...], "children": [names]}; "" is the root."""
    tree: Dict[str, Dict[str, Any]] = {"": {"ops": [], "children": []}}
    for op in ops:
        parts = op["resource"].split(".")
        for i in range(len(parts)):
            path = ".".join(parts[: i + 1])
            parent = ".".join(parts[:i])
            if path not in tree:
                tree[path] = {"ops": [], "children": []}
                tree[parent]["children"].append(parts[i])
        tree[op["resource"]]["ops"].append(op)
    return tree


def py_resources(doc: Document, ops: List[Dict[str, Any]]) -> str:
    tree = resource_tree(ops)
    models = sorted({n for op in ops for n in (op["result"], op["item"]) if n and n not in doc.pages})
    out = [PY_HEADER, '"""One class per resource, one method per operation of docs/openapi.json."""', ""]
    out += [
        "from __future__ import annotations",
        "",
        "from typing import Any, Dict, List, Literal, Mapping, Optional, Union, overload",
        "",
        "from ._models import *  # noqa: F403",
        "from ._models import " + ", ".join(models),
        "from ._transport import (",
        "    AsyncPager,",
        "    AsyncStream,",
        "    AsyncTransport,",
        "    FileTarget,",
        "    Stream,",
        "    SyncPage,",
        "    SyncTransport,",
        "    Timeout,",
        "    body,",
        "    path_segment,",
        ")",
        "from ._base import NOT_GIVEN",
        "",
    ]
    for sync in (True, False):
        prefix = "" if sync else "Async"
        transport = "SyncTransport" if sync else "AsyncTransport"
        # Children before parents, the root last.
        for path in sorted(tree, key=lambda p: -p.count(".") if p else 1):
            node = tree[path]
            cls = prefix + (pascal(path) + "Resource" if path else "Resources")
            out += ["", f"class {cls}:"]
            if not path:
                out.append('    """The resources of the API, as attributes of the client."""')
            out += ["", f"    def __init__(self, transport: {transport}) -> None:", "        self._t = transport"]
            for child in node["children"]:
                child_path = f"{path}.{child}" if path else child
                out.append(f"        self.{child} = {prefix}{pascal(child_path)}Resource(transport)")
            out.append("")
            for op in node["ops"]:
                out += py_method(doc, op, sync)
    out.append("")
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n\n", text).replace("\n\n\n    ", "\n\n    ")


# ---------------------------------------------------------------------------------------------
# TypeScript

TS_HEADER = "// Generated by sdks/generate.py from docs/openapi.json: do not edit by hand.\n"


def ts_type(doc: Document, schema: Dict[str, Any]) -> str:
    name = ref_name(schema)
    if name:
        return name
    if "oneOf" in schema:
        return " | ".join(ts_type(doc, o) for o in schema["oneOf"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(ts_type(doc, {**schema, "type": k}) for k in kind)
    if kind == "null":
        return "null"
    if kind == "string":
        if "enum" in schema:
            return " | ".join(json.dumps(v) for v in schema["enum"])
        return "string"
    if kind in ("integer", "number"):
        return "number"
    if kind == "boolean":
        return "boolean"
    if kind == "array":
        inner = ts_type(doc, schema.get("items", {}))
        return f"Array<{inner}>"
    if kind == "object":
        return "Record<string, unknown>"
    return "unknown"


def ts_models(doc: Document) -> str:
    out = [TS_HEADER, "/* The platform's resources and request bodies, as docs/openapi.json defines them. */", ""]
    for n, schema in doc.schemas.items():
        kind = doc.kind(n)
        if kind == "page":
            continue
        out += ts_doc(schema.get("description"), "")
        if kind in ("class", "extends"):
            props, required, base = doc.fields(n)
            extends = f" extends {base}" if base else ""
            out.append(f"export interface {n}{extends} {{")
            for field, s in props.items():
                out += ts_doc(s.get("description"), "  ")
                optional = "" if field in required else "?"
                out.append(f"  {field}{optional}: {ts_type(doc, s)};")
            out.append("}")
        else:
            out.append(f"export type {n} = {ts_type(doc, schema)};")
        out.append("")
    return "\n".join(out)


def ts_method(doc: Document, op: Dict[str, Any]) -> List[str]:
    params = [f"{camel(p)}: string" for p in op["path_params"]]
    kind = op["response"]
    path = re.sub(r"{(\w+)}", lambda m: "${segment(" + camel(m.group(1)) + ")}", op["path"])
    path = f"`{path}`" if "${" in path else f"'{path}'"
    call = {"body": None, "query": None}
    if op["body"]:
        required = bool(doc.all_required(op["body"]))
        body_type = op["body"] if kind != "stream" else f"Omit<{op['body']}, 'stream'>"
        params.append(f"body: {body_type}" + ("" if required else " = {}"))
        call["body"] = "body"
    query = [q for q in op["query"] if not (kind == "page" and q["name"] == "cursor")]
    if query:
        fields = "; ".join(f"{json.dumps(q['name']) if not q['name'].isidentifier() else q['name']}?: {'number' if q['name'] == 'limit' else 'string'}" for q in query)
        params.append(f"query: {{ {fields} }} = {{}}")
        call["query"] = "query"
    if kind == "download":
        params.append("options: RequestOptions = {}")
    else:
        params.append("options: RequestOptions = {}")
    signature = ", ".join(params)
    parts = ", ".join(f"{k}" for k, v in call.items() if v)
    init = f"{{ {parts} }}" if parts else "{}"
    name = camel(op["name"])
    docs = ts_doc(f"{op['method']} {op['path']}: {op['summary'] or ''}".strip(), "  ")
    m = op["method"]
    out: List[str] = []
    if kind == "chat":
        base = ", ".join(params[:-1])
        req = op["body"]
        out += docs
        out.append(f"  {name}(body: {req} & {{ stream: true }}, options?: RequestOptions): Promise<Stream<{op['item']}>>;")
        out.append(f"  {name}(body: {req} & {{ stream?: false | null }}, options?: RequestOptions): Promise<{op['result']}>;")
        out.append(f"  {name}(body: {req}, options?: RequestOptions): Promise<{op['result']} | Stream<{op['item']}>>;")
        out.append(f"  {name}({base}, options: RequestOptions = {{}}): Promise<{op['result']} | Stream<{op['item']}>> {{")
        out.append("    if (body.stream) {")
        out.append(f"      return this.client.stream<{op['item']}>('{m}', {path}, {init}, options);")
        out.append("    }")
        out.append(f"    return this.client.request<{op['result']}>('{m}', {path}, {init}, options);")
        out.append("  }")
    elif kind == "page":
        out += docs
        out.append(f"  {name}({signature}): PagePromise<{op['item']}> {{")
        out.append(f"    return this.client.page<{op['item']}>({path}, {init}, options);")
        out.append("  }")
    elif kind == "stream":
        out += docs
        out.append(f"  {name}({signature}): Promise<Stream<{op['item']}>> {{")
        out.append(f"    return this.client.stream<{op['item']}>('{m}', {path}, {init}, options);")
        out.append("  }")
    elif kind == "download":
        out += ts_doc(f"{op['method']} {op['path']}: {op['summary'] or ''}\nThe body as it arrives (a web ReadableStream); see also `{name}ToFile`.".strip(), "  ")
        out.append(f"  {name}({signature}): Promise<ReadableStream<Uint8Array>> {{")
        out.append(f"    return this.client.download('{m}', {path}, {init}, options);")
        out.append("  }")
        out += ts_doc(f"Streams {op['method']} {op['path']} into the file at `file` (Node), returning the bytes written.", "  ")
        file_params = params[: len(op["path_params"])] + ["file: string"] + params[len(op["path_params"]) :]
        out.append(f"  async {name}ToFile({', '.join(file_params)}): Promise<number> {{")
        out.append(f"    return this.client.downloadToFile(file, '{m}', {path}, {init}, options);")
        out.append("  }")
    else:
        result = op["result"] or "void"
        out += docs
        out.append(f"  {name}({signature}): Promise<{result}> {{")
        out.append(f"    return this.client.request<{result}>('{m}', {path}, {init}, options);")
        out.append("  }")
    out.append("")
    return out


def ts_resources(doc: Document, ops: List[Dict[str, Any]]) -> str:
    tree = resource_tree(ops)
    models = sorted({n for op in ops for n in (op["result"], op["item"], op["body"]) if n and n not in doc.pages})
    out = [TS_HEADER, "/* One class per resource, one method per operation of docs/openapi.json. */", ""]
    out.append("import type { " + ", ".join(models) + " } from './models.js';")
    out.append("import { segment, type PagePromise, type RequestOptions, type Stream, type Transport } from './core.js';")
    out.append("")
    for path in sorted(tree, key=lambda p: -p.count(".") if p else 1):
        node = tree[path]
        cls = pascal(path) + "Resource" if path else "Resources"
        if not path:
            out.append("/** The resources of the API, as properties of the client. */")
        out.append(f"export class {cls} {{")
        for child in node["children"]:
            child_path = f"{path}.{child}" if path else child
            out.append(f"  readonly {camel(child)}: {pascal(child_path)}Resource;")
        out.append("")
        out.append("  constructor(protected readonly client: Transport) {")
        for child in node["children"]:
            child_path = f"{path}.{child}" if path else child
            out.append(f"    this.{camel(child)} = new {pascal(child_path)}Resource(client);")
        out.append("  }")
        out.append("")
        for op in node["ops"]:
            out += ts_method(doc, op)
        while out[-1] == "":
            out.pop()
        out += ["}", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------

def outputs() -> Dict[Path, str]:
    doc = Document(json.loads(OPENAPI.read_text()))
    ops = doc.operations()
    return {
        ROOT / "sdks/python/src/ai_hub/_models.py": py_models(doc),
        ROOT / "sdks/python/src/ai_hub/_resources.py": py_resources(doc, ops),
        ROOT / "sdks/javascript/src/models.ts": ts_models(doc),
        ROOT / "sdks/javascript/src/resources.ts": ts_resources(doc, ops),
    }


def main(argv: List[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, text in outputs().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if check:
            stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(
            "The SDKs do not follow docs/openapi.json: " + ", ".join(stale) + " differ from what "
            "it generates. Run `python3 sdks/generate.py` and check the SDKs' tests.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
