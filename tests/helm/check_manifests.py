#!/usr/bin/env python3
"""Renders the ecomd Helm chart in every supported shape and checks what a cluster would receive.

    tests/helm/check_manifests.py --helm /path/to/helm [--chart helm/ecomd] [--kube-version 1.31.0]

Each test renders with `helm template`, parses the YAML and asserts, among other things, that every
role's workload uses the same image, passes --role=<role>, has liveness and readiness probes and
mounts a volume at the data dir, and that the topic Job exists. Invalid values must be refused.
Closes with the line `check_manifests: N passed, M failed`; exits 1 when anything failed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import traceback
from typing import Any, Callable

try:
    import yaml
except ImportError:  # scripts/helm-test.sh installs it; say so when run by hand.
    print("check_manifests: PyYAML is missing (pip install pyyaml, or apt-get install python3-yaml)")
    sys.exit(2)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VALUES = os.path.join(REPO, "tests", "helm", "values")
ROLES = ["order", "inventory", "payment", "notification", "saga"]
DATA_DIR = "/var/lib/ecomd"
DEFAULT_IMAGE = "ecomd:0.1.0"
# Path -> role whose Service must receive it (issue 7, the per-order SSE stream, /api/sagas).
ROUTES = {
    "/api/orders/[^/]+/events": "notification",
    "/api/orders": "order",
    "/api/inventory": "inventory",
    "/api/payments": "payment",
    "/api/sagas": "saga",
    "/api/notifications": "notification",
    "/api/events": "notification",
    "/api/openapi.yaml": "notification",
    "/ws": "notification",
    "/": "notification",
}
# Every path a role serves must be routed (issue 7 lists these; /api/sagas is the saga's view).
assert set(ROUTES.values()) == {"order", "inventory", "payment", "notification", "saga"}
ROLE_KINDS = {"StatefulSet", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
# Keys ecomd accepts in its config file (src/core/config.cpp, src/bus/kafka_admin.cpp).
TOP_LEVEL_KEYS = {"role", "data_dir", "http", "bus", "brokers", "log_level", "log_format",
                  "http_server",
                  "embedded_bus", "kafka", "topics", *ROLES}
KAFKA_KEYS = {"bootstrap_servers", "client_id", "topic_prefix", "group_prefix", "compression",
              "linger_ms", "batch_num_messages", "batch_size_bytes", "delivery_timeout_ms",
              "session_timeout_ms", "commit_interval_ms", "health_interval_ms", "topics_file",
              "properties", "producer_properties", "consumer_properties"}
TOPIC_KEYS = {"partitions", "replication_factor", "retention_ms", "dlq_retention_ms", "dlq", "config"}


class CheckFailed(Exception):
    pass


def check(cond: Any, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


class Helm:
    def __init__(self, binary: str, chart: str, kube_version: str):
        self.binary, self.chart, self.kube_version = binary, chart, kube_version

    def run(self, release: str, *args: str) -> subprocess.CompletedProcess:
        cmd = [self.binary, "template", release, self.chart, "--kube-version", self.kube_version,
               "--namespace", "shop", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def render(self, release: str, *args: str) -> "Manifests":
        res = self.run(release, *args)
        check(res.returncode == 0,
              f"helm template {release} {' '.join(args)} failed:\n{res.stderr.strip()}")
        docs = [d for d in yaml.safe_load_all(res.stdout) if d]
        return Manifests(release, docs)

    def refuse(self, needle: str, *args: str) -> None:
        res = self.run("bad", *args)
        check(res.returncode != 0, f"helm template {' '.join(args)} succeeded; it must be refused")
        check(needle.lower() in res.stderr.lower(),
              f"refusal of {' '.join(args)} does not mention {needle!r}:\n{res.stderr.strip()}")


class Manifests:
    def __init__(self, release: str, docs: list[dict]):
        self.release, self.docs = release, docs
        for d in docs:
            check(d.get("kind") and d.get("metadata", {}).get("name"),
                  f"object without kind or name: {str(d)[:200]}")

    def of(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict | None:
        return next((d for d in self.of(kind) if d["metadata"]["name"] == name), None)

    def workloads(self) -> dict[str, dict]:
        out = {}
        for sts in self.of("StatefulSet"):
            role = labels(sts).get("app.kubernetes.io/component")
            check(role not in out, f"two StatefulSets for role {role}")
            out[role] = sts
        return out

    def jobs(self) -> list[dict]:
        return self.of("Job")


def labels(obj: dict) -> dict:
    return obj.get("metadata", {}).get("labels") or {}


def annotations(obj: dict) -> dict:
    return obj.get("metadata", {}).get("annotations") or {}


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def container(obj: dict) -> dict:
    containers = pod_spec(obj)["containers"]
    check(len(containers) == 1, f"{obj['metadata']['name']}: expected one container")
    return containers[0]


def flag(args: list[str], name: str) -> str | None:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    check(len(values) <= 1, f"--{name} given {len(values)} times in {args}")
    return values[0] if values else None


def env_ref(cont: dict, name: str) -> dict | None:
    for e in cont.get("env") or []:
        if e["name"] == name:
            return e
    return None


def mounted_config(m: Manifests, obj: dict) -> tuple[dict, dict]:
    """The parsed ecomd.json that --config points at, and the ConfigMap holding it."""
    cont = container(obj)
    path = flag(cont.get("args", []), "config")
    check(path, f"{obj['metadata']['name']}: no --config flag")
    mount = next((vm for vm in cont.get("volumeMounts", [])
                  if path.startswith(vm["mountPath"].rstrip("/") + "/")), None)
    check(mount, f"{obj['metadata']['name']}: --config={path} is not under a mounted volume")
    volume = next(v for v in pod_spec(obj)["volumes"] if v["name"] == mount["name"])
    check("configMap" in volume, f"{obj['metadata']['name']}: config volume is not a ConfigMap")
    cm = m.get("ConfigMap", volume["configMap"]["name"])
    check(cm, f"ConfigMap {volume['configMap']['name']} is referenced but not rendered")
    key = path[len(mount["mountPath"].rstrip("/")) + 1:]
    check(key in cm.get("data", {}), f"ConfigMap {cm['metadata']['name']} has no key {key}")
    try:
        return json.loads(cm["data"][key]), cm
    except json.JSONDecodeError as e:
        raise CheckFailed(f"ConfigMap {cm['metadata']['name']}/{key} is not JSON: {e}")


def check_labels(m: Manifests) -> None:
    seen = set()
    for d in m.docs:
        key = (d["kind"], d["metadata"]["name"])
        check(key not in seen, f"{key} rendered twice")
        seen.add(key)
        lab = labels(d)
        where = f"{d['kind']}/{d['metadata']['name']}"
        for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                  "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"):
            check(lab.get(k), f"{where}: label {k} missing")
        check(lab["app.kubernetes.io/name"] == "ecomd", f"{where}: name label is not ecomd")
        check(lab["app.kubernetes.io/instance"] == m.release, f"{where}: instance label")
        check(lab["app.kubernetes.io/managed-by"] == "Helm", f"{where}: managed-by label")
        if d["kind"] in ROLE_KINDS:
            check(lab.get("app.kubernetes.io/component") in ROLES,
                  f"{where}: component label {lab.get('app.kubernetes.io/component')!r}")


def check_release(m: Manifests, roles: list[str], image: str = DEFAULT_IMAGE,
                  replication_factor: int = 3, persistence: bool = True,
                  extra_args: dict[str, list[str]] | None = None) -> dict:
    """The checks every rendering must pass. Returns the parsed ecomd.json."""
    extra_args = extra_args or {}
    check_labels(m)
    workloads = m.workloads()
    check(sorted(workloads) == sorted(roles),
          f"roles deployed {sorted(workloads)}, expected {sorted(roles)}")

    images = set()
    common_args = None
    config = None
    for role, sts in workloads.items():
        name = sts["metadata"]["name"]
        cont = container(sts)
        images.add(cont["image"])
        args = cont.get("args", [])
        check(cont.get("command") is None, f"{name}: overrides the image ENTRYPOINT")
        check(args.count(f"--role={role}") == 1 and flag(args, "role") == role,
              f"{name}: args {args} do not pass --role={role} exactly once")
        # The role is the only difference between roles' arguments (besides explicit extraArgs).
        rest = [a for a in args if not a.startswith("--role=")]
        extra = extra_args.get(role, [])
        check(rest[len(rest) - len(extra):] == extra if extra else True,
              f"{name}: extraArgs {extra} not appended at the end of {args}")
        rest = rest[: len(rest) - len(extra)]
        check(common_args is None or rest == common_args,
              f"{name}: args {rest} differ from another role's {common_args} beyond --role")
        common_args = rest
        check(flag(args, "bus") == "kafka", f"{name}: roles in separate pods need --bus=kafka")

        port_names = {p["name"]: p["containerPort"] for p in cont.get("ports", [])}
        check("http" in port_names, f"{name}: no container port named http")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            p = cont.get(probe)
            check(p and p.get("httpGet", {}).get("path") == path,
                  f"{name}: {probe} must GET {path}, is {p}")
            check(p["httpGet"]["port"] in ("http", port_names["http"]),
                  f"{name}: {probe} probes another port")
        http_flag = flag(args, "http")
        check(http_flag and http_flag.endswith(f":{port_names['http']}"),
              f"{name}: --http={http_flag} does not match containerPort {port_names['http']}")

        data_dir = flag(args, "data-dir")
        check(data_dir == DATA_DIR, f"{name}: --data-dir={data_dir}, expected {DATA_DIR}")
        mount = next((vm for vm in cont.get("volumeMounts", [])
                      if vm["mountPath"].rstrip("/") == data_dir), None)
        check(mount, f"{name}: nothing mounted at the data dir {data_dir}")
        check(not mount.get("readOnly"), f"{name}: data dir mounted read-only")
        vcts = {v["metadata"]["name"]: v for v in sts["spec"].get("volumeClaimTemplates") or []}
        pod_volumes = {v["name"]: v for v in pod_spec(sts).get("volumes") or []}
        if persistence:
            check(mount["name"] in vcts, f"{name}: data dir is not a PersistentVolumeClaim")
            check(mount["name"] not in pod_volumes, f"{name}: data volume shadowed by a pod volume")
            vct = vcts[mount["name"]]
            check(vct["spec"]["resources"]["requests"].get("storage"), f"{name}: no storage size")
            check("app.kubernetes.io/version" not in labels(vct),
                  f"{name}: version label on volumeClaimTemplates breaks upgrades")
        else:
            check(not vcts, f"{name}: volumeClaimTemplates although persistence is off")
            check("emptyDir" in pod_volumes.get(mount["name"], {}), f"{name}: data not emptyDir")

        spec = pod_spec(sts)
        check(spec.get("terminationGracePeriodSeconds", 0) > 0, f"{name}: no grace period")
        check(spec.get("securityContext", {}).get("runAsNonRoot") is True, f"{name}: may run as root")
        check(spec.get("enableServiceLinks") is False, f"{name}: service links inject ECOMD_* env")
        sel = sts["spec"]["selector"]["matchLabels"]
        check(sel.get("app.kubernetes.io/component") == role, f"{name}: selector lacks the role")
        pod_labels = labels(sts["spec"]["template"])
        check(all(pod_labels.get(k) == v for k, v in sel.items()), f"{name}: selector misses pods")
        if "/tmp" not in {vm["mountPath"] for vm in cont.get("volumeMounts", [])}:
            check(not cont.get("securityContext", {}).get("readOnlyRootFilesystem"),
                  f"{name}: read-only root without a writable /tmp")

        cfg, _ = mounted_config(m, sts)
        check(config is None or cfg == config, f"{name}: roles see different configurations")
        config = cfg

        svc = m.get("Service", name)
        check(svc, f"{name}: no Service named like the StatefulSet")
        check(svc["spec"].get("clusterIP") != "None", f"{name}: client Service is headless")
        check(svc["spec"]["selector"] == sel, f"Service {name} selects {svc['spec']['selector']}")
        check(any(p["name"] == "http" and p["targetPort"] in ("http", port_names["http"])
                  for p in svc["spec"]["ports"]), f"Service {name}: no http port")
        headless = m.get("Service", sts["spec"]["serviceName"])
        check(headless and headless["spec"].get("clusterIP") == "None",
              f"{name}: serviceName {sts['spec']['serviceName']} is not a headless Service")
        pdb = m.get("PodDisruptionBudget", name)
        check(pdb and pdb["spec"]["selector"]["matchLabels"] == sel, f"{name}: no matching PDB")

    if roles:
        check(config["bus"] == "kafka", "config: bus is not kafka")
        rf = config.get("topics", {}).get("defaults", {}).get("replication_factor")
        check(rf == replication_factor,
              f"config: topics.defaults.replication_factor {rf}, expected {replication_factor}")
        # ecomd refuses unknown keys at start-up (src/core/config.cpp, src/bus/kafka_admin.cpp).
        check(set(config) <= TOP_LEVEL_KEYS, f"config: unknown top-level keys "
              f"{sorted(set(config) - TOP_LEVEL_KEYS)}")
        check(set(config["kafka"]) <= KAFKA_KEYS,
              f"config: unknown kafka keys {sorted(set(config['kafka']) - KAFKA_KEYS)}")
        check(set(config["topics"]) <= {"defaults", "topics"}, "config: unknown topics keys")
        check(set(config["topics"]["defaults"]) <= TOPIC_KEYS, "config: unknown topic default keys")
        check(all(isinstance(v, str) for v in config["kafka"].get("properties", {}).values()),
              "config: librdkafka properties must be strings")
        check(config["kafka"]["bootstrap_servers"], "config: no bootstrap_servers")
        check("role" not in config, "config pins a role; --role must decide")

        jobs = m.jobs()
        check(len(jobs) == 1, f"expected one topic Job, found {len(jobs)}")
        job = jobs[0]
        jname = job["metadata"]["name"]
        hooks = set(annotations(job).get("helm.sh/hook", "").split(","))
        check({"pre-install", "pre-upgrade"} <= hooks, f"Job {jname}: hooks are {hooks}")
        jcont = container(job)
        images.add(jcont["image"])
        check(jcont.get("args", [])[:2] == ["topics", "create"],
              f"Job {jname}: args {jcont.get('args')} do not run `topics create`")
        check(pod_spec(job).get("restartPolicy") in ("Never", "OnFailure"), "Job restartPolicy")
        jcfg, jcm = mounted_config(m, job)
        check(jcfg == config, "the topic Job sees another configuration than the roles")
        check("helm.sh/hook" in annotations(jcm),
              f"Job {jname} reads ConfigMap {jcm['metadata']['name']}, which is not a hook: it "
              "would not exist yet at pre-install")
        check(int(annotations(jcm).get("helm.sh/hook-weight", "0"))
              < int(annotations(job).get("helm.sh/hook-weight", "0")),
              "the Job's ConfigMap hook must have a lower weight than the Job")
        for e in jcont.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref and m.get("Secret", ref["name"]):
                check("helm.sh/hook" in annotations(m.get("Secret", ref["name"])),
                      f"Job {jname} needs Secret {ref['name']} before it exists")
        for pod in m.of("Pod"):  # helm test pods
            images.add(container({"spec": {"template": {"spec": pod["spec"]}},
                                  "metadata": pod["metadata"]})["image"])
    else:
        check(not m.jobs(), "topic Job rendered although no role is deployed")

    check(len(images) <= 1, f"workloads use different images: {sorted(images)}")
    if roles:
        check(images == {image}, f"image is {images}, expected {image}")
    return config or {}


# ----------------------------------------------------------------------------------- tests


def t_all_roles_at_once(h: Helm) -> None:
    m = h.render("ecomd")
    check_release(m, ROLES)
    check(m.get("StatefulSet", "ecomd-order"), "release 'ecomd' must not be named ecomd-ecomd-*")
    check(not m.of("Ingress"), "Ingress rendered although disabled")
    check(not m.of("HorizontalPodAutoscaler"), "HPA rendered although disabled")
    check(len(m.of("ConfigMap")) == 2, "expected the ConfigMap and its hook copy")


def make_single_role_test(role: str) -> Callable[[Helm], None]:
    def t(h: Helm) -> None:
        m = h.render(f"{role}s", "--set", f"role={role}")
        check_release(m, [role])
        check(m.get("StatefulSet", f"{role}s-ecomd-{role}"), "StatefulSet name")
        check(len(m.of("Service")) == 2, "one client and one headless Service expected")
    t.__name__ = f"t_single_role_{role}"
    return t


def t_single_role_wins_over_roles_map(h: Helm) -> None:
    m = h.render("orders", "--set", "role=order", "--set", "roles.order.enabled=false",
                 "--set", "roles.order.replicas=0")
    check_release(m, ["order"])
    check(m.workloads()["order"]["spec"]["replicas"] == 0, "roles.order.replicas not used")


def t_multi_role_subset(h: Helm) -> None:
    m = h.render("core", "--set", "roles.notification.enabled=false",
                 "--set", "roles.payment.enabled=false")
    check_release(m, ["order", "inventory", "saga"])


def t_no_role_renders_no_workload(h: Helm) -> None:
    args = []
    for r in ROLES:
        args += ["--set", f"roles.{r}.enabled=false"]
    m = h.render("empty", *args)
    check_release(m, [])
    check(not m.docs, f"objects rendered without roles: {[d['kind'] for d in m.docs]}")


def ingress_routes(m: Manifests, may_be_absent: bool = False) -> dict[str, tuple[str, str]]:
    ings = m.of("Ingress")
    if may_be_absent and not ings:
        return {}
    check(len(ings) == 1, f"expected one Ingress, found {len(ings)}")
    out = {}
    for rule in ings[0]["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            check(p["path"] not in out, f"path {p['path']} routed twice")
            out[p["path"]] = (p["backend"]["service"]["name"], p["pathType"])
    return out


def check_route_targets(m: Manifests, routes: dict[str, tuple[str, str]]) -> None:
    for path, (service, path_type) in routes.items():
        svc = m.get("Service", service)
        check(svc, f"Ingress path {path} -> Service {service}, which is not rendered")
        role = svc["spec"]["selector"].get("app.kubernetes.io/component")
        check(role == ROUTES.get(path), f"Ingress path {path} -> role {role}, want {ROUTES.get(path)}")
        check(path_type in ("Prefix", "Exact", "ImplementationSpecific"), f"pathType {path_type}")
        if any(ch in path for ch in "[]^$+*"):
            check(path_type == "ImplementationSpecific",
                  f"regex path {path} needs pathType ImplementationSpecific")


def t_ingress_all_roles(h: Helm) -> None:
    m = h.render("shop", "-f", os.path.join(VALUES, "ingress.yaml"))
    check_release(m, ROLES)
    routes = ingress_routes(m)
    check(set(routes) == set(ROUTES), f"Ingress paths {sorted(routes)}, expected {sorted(ROUTES)}")
    check_route_targets(m, routes)
    ing = m.of("Ingress")[0]
    check(ing["spec"]["rules"][0].get("host") == "shop.example.com", "Ingress host")
    check(ing["spec"]["tls"][0]["secretName"] == "ecomd-tls", "Ingress TLS")
    check(ing["spec"].get("ingressClassName") == "nginx", "ingressClassName")
    check(annotations(ing).get("nginx.ingress.kubernetes.io/use-regex") == "true",
          "the regex route needs use-regex")


def t_ingress_per_role_releases(h: Helm) -> None:
    union: dict[str, str] = {}
    names = set()
    for role in ROLES:
        m = h.render(f"{role}s", "--set", f"role={role}", "-f", os.path.join(VALUES, "ingress.yaml"))
        check_release(m, [role])
        routes = ingress_routes(m)
        check_route_targets(m, routes)
        for path in routes:
            check(ROUTES[path] == role, f"release {role}s routes {path}, which belongs to {ROUTES[path]}")
            check(path not in union, f"{path} routed by two releases")
            union[path] = role
        for d in m.docs:
            key = (d["kind"], d["metadata"]["name"])
            check(key not in names, f"{key} collides between per-role releases")
            names.add(key)
    check(set(union) == set(ROUTES), f"per-role releases route {sorted(union)}, want all of ROUTES")


def t_kafka_sasl_tls_existing_secret(h: Helm) -> None:
    m = h.render("secure", "-f", os.path.join(VALUES, "kafka-sasl-tls.yaml"))
    cfg = check_release(m, ROLES)
    props = cfg["kafka"]["properties"]
    check(props.get("security.protocol") == "sasl_ssl", f"security.protocol {props}")
    check(props.get("sasl.mechanism") == "SCRAM-SHA-512", "sasl.mechanism")
    check(props.get("sasl.username") == "ecomd", "sasl.username")
    check("sasl.password" not in props, "the password must not be in the ConfigMap")
    check(props.get("linger.ms") == "5", "extra librdkafka properties are passed through")
    check(cfg["kafka"]["bootstrap_servers"].endswith(":9093"), "bootstrap servers")
    check(not m.of("Secret"), "no Secret may be rendered when existingSecret is used")
    for obj in list(m.workloads().values()) + m.jobs():
        cont = container(obj)
        name = obj["metadata"]["name"]
        pw = env_ref(cont, "ECOMD_KAFKA_PROP_SASL_PASSWORD")
        check(pw and pw["valueFrom"]["secretKeyRef"] == {"name": "ecomd", "key": "password"},
              f"{name}: SASL password not taken from the existing Secret: {pw}")
        kp = env_ref(cont, "ECOMD_KAFKA_PROP_SSL_KEY_PASSWORD")
        check(kp and kp["valueFrom"]["secretKeyRef"]["name"] == "ecomd-extra",
              f"{name}: secretProperties not passed as ECOMD_KAFKA_PROP_SSL_KEY_PASSWORD")
        ca = props.get("ssl.ca.location", "")
        mount = next((vm for vm in cont["volumeMounts"]
                      if ca.startswith(vm["mountPath"].rstrip("/") + "/")), None)
        check(mount, f"{name}: ssl.ca.location {ca!r} is not under a mounted volume")
        vol = next(v for v in pod_spec(obj)["volumes"] if v["name"] == mount["name"])
        check(vol.get("secret", {}).get("secretName") == "ecomd-kafka-cluster-ca-cert",
              f"{name}: CA volume is {vol}")
        check(ca.endswith("/ca.crt"), f"ssl.ca.location {ca}")


def t_notification_secrets(h: Helm) -> None:
    m = h.render("shop", "--set", "notificationSecrets.existingSecret=shop-notify",
                 "--set", "notificationSecrets.webhookSecretKey=webhook-secret",
                 "--set", "notificationSecrets.smtpPasswordKey=smtp-password",
                 "--set", "config.notification.sink=smtp",
                 "--set", "config.notification.smtp.username=shop")
    cfg = check_release(m, ROLES)
    check(cfg["notification"]["smtp"] == {"username": "shop"}, "notification config from values")
    check(not m.of("Secret"), "the chart must not make a Secret for notificationSecrets")
    for role, sts in m.workloads().items():
        cont = container(sts)
        hook = env_ref(cont, "ECOMD_WEBHOOK_SECRET")
        smtp = env_ref(cont, "ECOMD_SMTP_PASSWORD")
        if role == "notification":
            check(hook and hook["valueFrom"]["secretKeyRef"] == {"name": "shop-notify",
                                                                  "key": "webhook-secret"},
                  f"{role}: webhook secret not taken from the Secret: {hook}")
            check(smtp and smtp["valueFrom"]["secretKeyRef"] == {"name": "shop-notify",
                                                                  "key": "smtp-password"},
                  f"{role}: SMTP password not taken from the Secret: {smtp}")
        else:
            check(hook is None and smtp is None, f"{role} gets the notification secrets")
    # Only the keys that are named.
    m = h.render("shop", "--set", "notificationSecrets.existingSecret=shop-notify",
                 "--set", "notificationSecrets.webhookSecretKey=hook")
    sts = m.workloads()["notification"]
    check(env_ref(container(sts), "ECOMD_SMTP_PASSWORD") is None, "an unnamed key is passed")
    h.refuse("ConfigMap", "--set", "config.notification.webhook.secret=x")
    h.refuse("ConfigMap", "--set", "config.notification.smtp.password=x")
    h.refuse("webhookSecretKey", "--set", "notificationSecrets.existingSecret=s")
    h.refuse("existingSecret", "--set", "notificationSecrets.smtpPasswordKey=k")


def t_kafka_inline_password(h: Helm) -> None:
    m = h.render("plain", "-f", os.path.join(VALUES, "kafka-inline-password.yaml"))
    cfg = check_release(m, ROLES)
    check(cfg["kafka"]["properties"]["security.protocol"] == "sasl_plaintext", "lower-cased protocol")
    check(cfg["kafka"]["properties"]["sasl.mechanism"] == "PLAIN", "mechanism")
    secret = m.get("Secret", "plain-ecomd-kafka")
    check(secret and "helm.sh/hook" not in annotations(secret), "the roles' Secret is missing")
    check(base64.b64decode(secret["data"]["password"]).decode() == "not-a-real-password",
          "Secret content")
    hook_secret = m.get("Secret", "plain-ecomd-topics-kafka")
    check(hook_secret and "pre-install" in annotations(hook_secret).get("helm.sh/hook", ""),
          "the topic Job's hook Secret is missing")
    for sts in m.workloads().values():
        ref = env_ref(container(sts), "ECOMD_KAFKA_PROP_SASL_PASSWORD")["valueFrom"]["secretKeyRef"]
        check(ref == {"name": "plain-ecomd-kafka", "key": "password"}, f"role env ref {ref}")
    ref = env_ref(container(m.jobs()[0]), "ECOMD_KAFKA_PROP_SASL_PASSWORD")["valueFrom"]["secretKeyRef"]
    check(ref == {"name": "plain-ecomd-topics-kafka", "key": "password"}, f"Job env ref {ref}")
    check("not-a-real-password" not in json.dumps(cfg), "password leaked into the ConfigMap")


def t_kafka_mtls(h: Helm) -> None:
    m = h.render("mtls", "-f", os.path.join(VALUES, "mtls.yaml"))
    cfg = check_release(m, ROLES)
    props = cfg["kafka"]["properties"]
    check(props["security.protocol"] == "ssl", "protocol")
    check("sasl.mechanism" not in props, "no SASL with plain ssl")
    for obj in list(m.workloads().values()) + m.jobs():
        cont = container(obj)
        for key in ("ssl.certificate.location", "ssl.key.location", "ssl.ca.location"):
            loc = props[key]
            mount = next((vm for vm in cont["volumeMounts"]
                          if loc.startswith(vm["mountPath"].rstrip("/") + "/")), None)
            check(mount, f"{obj['metadata']['name']}: {key}={loc} is not mounted")
        check(not env_ref(cont, "ECOMD_KAFKA_PROP_SASL_PASSWORD"), "SASL env without SASL")


def t_scaling_when_allowed(h: Helm) -> None:
    m = h.render("big", "-f", os.path.join(VALUES, "scaled.yaml"))
    check_release(m, ROLES)
    w = m.workloads()
    check(w["saga"]["spec"]["replicas"] == 2, "saga replicas")
    check("replicas" not in w["payment"]["spec"], "an HPA-managed StatefulSet must not pin replicas")
    hpas = m.of("HorizontalPodAutoscaler")
    check(len(hpas) == 1, f"expected one HPA, found {len(hpas)}")
    target = hpas[0]["spec"]["scaleTargetRef"]
    check(target["kind"] == "StatefulSet" and target["name"] == w["payment"]["metadata"]["name"],
          f"HPA targets {target}")
    check(hpas[0]["spec"]["minReplicas"] == 2 and hpas[0]["spec"]["maxReplicas"] == 4, "HPA bounds")


def t_postgres_store_scales(h: Helm) -> None:
    m = h.render("shop", "-f", os.path.join(VALUES, "postgres.yaml"))
    check_release(m, ROLES, persistence=False)  # no volume per pod: the state is in PostgreSQL
    w = m.workloads()
    check(w["notification"]["spec"]["replicas"] == 3, "notification replicas")
    check("replicas" not in w["payment"]["spec"], "an HPA-managed StatefulSet must not pin replicas")
    hpas = m.of("HorizontalPodAutoscaler")
    check(len(hpas) == 1 and hpas[0]["spec"]["maxReplicas"] == 6, "the payment HPA")
    secret = m.get("Secret", "shop-ecomd-store")
    check(secret is not None, "a Secret for the store")
    check(base64.b64decode(secret["data"]["password"]).decode() == "not-in-the-configmap",
          "the store password in the Secret")
    for role, sts in w.items():
        check(sts["spec"].get("podManagementPolicy") == "Parallel", f"{role}: parallel start")
        cont = container(sts)
        check(env_ref(cont, "ECOMD_STORE")["value"] == "postgres", f"{role}: ECOMD_STORE")
        for var, key in (("ECOMD_STORE_URL", "url"), ("ECOMD_STORE_PASSWORD", "password")):
            ref = env_ref(cont, var)["valueFrom"]["secretKeyRef"]
            check(ref == {"name": "shop-ecomd-store", "key": key}, f"{role}: {var} from {ref}")
    for cm in m.of("ConfigMap"):
        check("not-in-the-configmap" not in json.dumps(cm), "the store password in a ConfigMap")
        check("postgres.shop.svc" not in json.dumps(cm), "the store URL in a ConfigMap")

    # An existing Secret instead: no chart Secret, its keys are used.
    m = h.render("shop", "--set", "store.type=postgres", "--set", "store.existingSecret=pg",
                 "--set", "store.urlKey=dsn", "--set", "roles.saga.replicas=2")
    check(m.get("Secret", "shop-ecomd-store") is None, "no chart Secret with existingSecret")
    cont = container(m.workloads()["saga"])
    check(env_ref(cont, "ECOMD_STORE_URL")["valueFrom"]["secretKeyRef"] == {"name": "pg", "key": "dsn"},
          "the URL from the existing Secret")
    check(env_ref(cont, "ECOMD_STORE_PASSWORD")["valueFrom"]["secretKeyRef"]
          == {"name": "pg", "key": "password", "optional": True}, "an optional password key")


def t_custom_values(h: Helm) -> None:
    image = "registry.example.com/shop/ecomd:0.1.0-rc.1"
    m = h.render("custom", "-f", os.path.join(VALUES, "custom.yaml"))
    cfg = check_release(m, ["order", "inventory", "payment", "saga"], image=image,
                        extra_args={"order": ["--log-level=debug"]})
    check(cfg["log_level"] == "debug", "logLevel")
    check(cfg["saga"]["step_timeout_ms"] == 15000, "saga deadline from values")
    check(cfg["kafka"]["topic_prefix"] == "staging.", "config.kafka extras merge with the chart's")
    check(cfg["kafka"]["bootstrap_servers"], "config.kafka must not replace bootstrap_servers")
    check(cfg["topics"]["defaults"] == {"partitions": 3, "replication_factor": 3,
                                        "retention_ms": 1209600000},
          f"config.topics.defaults merge: {cfg['topics']['defaults']}")
    check(cfg["topics"]["topics"]["orders.created"]["partitions"] == 12, "per-topic settings")
    check(cfg["notification"]["templates"]["ecom.order.status-changed.v1"].startswith("Order"),
          "notification templates from values")
    w = m.workloads()
    for role, sts in w.items():
        cont = container(sts)
        check(cont["imagePullPolicy"] == "Always", "pullPolicy")
        check(pod_spec(sts)["imagePullSecrets"] == [{"name": "regcred"}], "imagePullSecrets")
        check(env_ref(cont, "ECOMD_EXAMPLE"), f"{role}: global env missing")
        check(bool(env_ref(cont, "TZ")) == (role == "order"), f"{role}: per-role env")
        check("lifecycle" not in cont, "preStopSleepSeconds=0 must drop the preStop hook")
        vct = sts["spec"]["volumeClaimTemplates"][0]["spec"]
        check(vct["storageClassName"] == "fast-ssd", "storageClass")
        want = "10Gi" if role == "order" else "5Gi"
        check(vct["resources"]["requests"]["storage"] == want, f"{role}: storage size")
        check(labels(sts)["app.kubernetes.io/version"] == "0.1.0-rc.1", "version label = image tag")
    for pdb in m.of("PodDisruptionBudget"):
        check(pdb["spec"] == {"minAvailable": 0, "selector": pdb["spec"]["selector"]},
              f"PDB spec {pdb['spec']}")
    check(annotations(m.jobs()[0])["helm.sh/hook-delete-policy"] == "before-hook-creation",
          "topicsJob.deletePolicy")


def t_no_persistence(h: Helm) -> None:
    check_release(h.render("tmp", "-f", os.path.join(VALUES, "no-persistence.yaml")), ROLES,
                  persistence=False)


def t_config_change_rolls_pods(h: Helm) -> None:
    def checksums(*args: str) -> dict:
        m = h.render("ecomd", *args)
        return {r: annotations(s["spec"]["template"])["checksum/config"]
                for r, s in m.workloads().items()}
    a, b = checksums(), checksums("--set", "config.saga.step_timeout_ms=1000")
    check(all(a[r] != b[r] for r in ROLES), "a config change must change the pod template")
    check(checksums() == a, "the checksum must be deterministic")


def t_upgrade_keeps_topic_job(h: Helm) -> None:
    check_release(h.render("ecomd", "--is-upgrade"), ROLES)


def t_replication_factor_value(h: Helm) -> None:
    check_release(h.render("ecomd", "--set", "kafka.replicationFactor=1"), ROLES,
                  replication_factor=1)


def t_refuses_invalid_values(h: Helm) -> None:
    h.refuse("role", "--set", "role=shipping")
    h.refuse("orders", "--set", "roles.orders.enabled=true")
    h.refuse("store.type", "--set", "roles.saga.replicas=2")
    h.refuse("store.type", "--set", "roles.notification.replicas=3")
    h.refuse("store.type", "--set", "roles.payment.autoscaling.enabled=true")
    h.refuse("store.url", "--set", "store.type=postgres")
    h.refuse("store", "--set", "store.type=mysql")
    h.refuse("existingSecret", "--set", "kafka.securityProtocol=sasl_ssl")
    h.refuse("not both", "--set", "kafka.securityProtocol=sasl_ssl", "--set",
             "kafka.sasl.username=u", "--set", "kafka.sasl.password=p",
             "--set", "kafka.sasl.existingSecret=s")
    h.refuse("logLevel", "--set", "logLevel=verbose")
    h.refuse("bootstrapServers", "--set", "kafka.bootstrapServers=no-port")
    h.refuse("config", "--set", "config.role=order")
    h.refuse("config", "--set", "config.brokers=x:1")
    h.refuse("not both", "--set", "podDisruptionBudget.minAvailable=1")
    h.refuse("image", "--set", "image.repository=")


TESTS: list[Callable[[Helm], None]] = [
    t_all_roles_at_once,
    *[make_single_role_test(r) for r in ROLES],
    t_single_role_wins_over_roles_map,
    t_multi_role_subset,
    t_no_role_renders_no_workload,
    t_ingress_all_roles,
    t_ingress_per_role_releases,
    t_kafka_sasl_tls_existing_secret,
    t_kafka_inline_password,
    t_notification_secrets,
    t_kafka_mtls,
    t_scaling_when_allowed,
    t_postgres_store_scales,
    t_custom_values,
    t_no_persistence,
    t_config_change_rolls_pods,
    t_upgrade_keeps_topic_job,
    t_replication_factor_value,
    t_refuses_invalid_values,
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--helm", default=os.environ.get("HELM", "helm"))
    ap.add_argument("--chart", default=os.path.join(REPO, "helm", "ecomd"))
    ap.add_argument("--kube-version", default="1.31.0")
    ap.add_argument("-k", dest="select", default="", help="run tests whose name contains this")
    opts = ap.parse_args()
    h = Helm(opts.helm, opts.chart, opts.kube_version)
    passed = failed = 0
    for t in TESTS:
        name = t.__name__[2:]
        if opts.select not in name:
            continue
        try:
            t(h)
        except CheckFailed as e:
            failed += 1
            print(f"FAIL {name}: {e}")
        except Exception:  # a bug in the test or an unexpected manifest shape
            failed += 1
            print(f"FAIL {name}: unexpected error\n{traceback.format_exc()}")
        else:
            passed += 1
            print(f"PASS {name}")
    print(f"check_manifests: {passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
