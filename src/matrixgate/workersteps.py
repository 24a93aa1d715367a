"""Steps that run Matrix Gate's own scripts (``onworker/``) on a worker and read their JSON.

The scripts are stdlib-only single files: the master downloads them into the build's
``matrixgate/`` folder, so a worker needs nothing but ``python3`` and buildbot-worker.
"""

from __future__ import annotations

import json
from pathlib import Path

from buildbot.process import buildstep, logobserver
from buildbot.process.results import EXCEPTION, FAILURE, SUCCESS
from buildbot.steps.transfer import FileDownload
from twisted.internet import defer

from . import props

ONWORKER_DIR = Path(__file__).resolve().parent / "onworker"
#: Relative to the build directory; outside ``build/`` so a clobbering checkout keeps it.
TOOLS_DIR = "matrixgate"


def download(script: str, **kwargs) -> FileDownload:
    return FileDownload(
        name=f"send {script}",
        mastersrc=str(ONWORKER_DIR / script),
        workerdest=script,
        workdir=TOOLS_DIR,
        mode=0o755,
        hideStepIf=lambda results, step: results == SUCCESS,   # shown when it fails
        **kwargs,
    )


def json_from_output(text: str) -> dict | None:
    """The JSON object a script printed: its last stdout line that parses as one.

    Scripts print human lines too, and those may contain braces (a QEMU error quoting a
    ``json:{...}`` file name), so never take "first brace to last brace".
    """
    for line in reversed(text.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


class JsonScriptStep(buildstep.ShellMixin, buildstep.BuildStep):
    """Runs one of the ``onworker`` scripts and turns its JSON into properties and a summary."""

    script = ""
    #: A script's own "cannot work here" exit is an infrastructure problem, not a test failure.
    failure_result = FAILURE

    def __init__(self, **kwargs):
        kwargs = self.setupShellMixin(kwargs)
        kwargs.setdefault("workdir", TOOLS_DIR)
        super().__init__(**kwargs)
        self.summary = ""
        self.observer = logobserver.BufferLogObserver(wantStdout=True, wantStderr=True)
        self.addLogObserver("stdio", self.observer)

    def arguments(self) -> list:
        return []

    @defer.inlineCallbacks
    def run(self):
        command = ["python3", self.script, *(yield self.build.render(self.arguments()))]
        cmd = yield self.makeRemoteShellCommand(command=command)
        yield self.runCommand(cmd)
        data = json_from_output(self.observer.getStdout())
        if data is None:
            self.summary = f"{self.name}: the script printed no result (exit {cmd.rc}); see its log"
            return EXCEPTION
        result = self.interpret(data, cmd.rc)
        return result

    def interpret(self, data: dict, rc: int) -> int:
        raise NotImplementedError

    def getResultSummary(self):
        if self.summary:
            return {"step": self.summary}
        return super().getResultSummary()


class Preflight(JsonScriptStep):
    """Re-runs the capability probe right before a plasma leg: the host may have changed."""

    name = "preflight kvm+qemu"
    script = "probe.py"
    failure_result = EXCEPTION

    def __init__(self, required: frozenset[str], **kwargs):
        super().__init__(**kwargs)
        self.required = required

    def arguments(self):
        return ["--json"]

    def interpret(self, data, rc):
        self.setProperty(props.PROBED_CAPABILITIES, data, "preflight")
        have = set(data.get("capabilities") or [])
        missing = sorted(self.required - have)
        if not missing:
            self.summary = f"preflight: {', '.join(sorted(self.required))} usable on {self.build.workername}"
            return SUCCESS
        from .capabilities import refusal_reason
        self.summary = (f"preflight failed on {self.build.workername}, not a test failure: "
                        + refusal_reason(frozenset(missing), data))
        return self.failure_result


class Provision(JsonScriptStep):
    """QEMU from PLASMAVMC_QEMU_PATH or PATH, and a checked qcow2 (made here unless given)."""

    name = "provision qemu+qcow2"
    script = "provision.py"
    failure_result = EXCEPTION

    def arguments(self):
        from buildbot.process.properties import Interpolate
        return ["--out-dir", Interpolate("%(prop:builddir)s/" + TOOLS_DIR + "/plasma")]

    def interpret(self, data, rc):
        if rc != 0 or not data.get("qcow2_path"):
            self.summary = f"provisioning failed: {data.get('error') or data.get('detail') or 'see log'}"
            return self.failure_result
        for key in ("qemu_path", "qemu_version", "qcow2_path", "qcow2_sha256", "image_id", "provisioned"):
            self.setProperty(f"plasma_{key}", data.get(key), "provision")
        origin = "provisioned" if data.get("provisioned") else "given by PLASMAVMC_QCOW2_PATH"
        self.summary = f"{data.get('qemu_version') or 'qemu'}; image {origin}, sha256 {str(data.get('qcow2_sha256'))[:12]}"
        return SUCCESS


class VmSmoke(JsonScriptStep):
    """Proves QEMU starts a VM with the image under KVM (TCG only where the leg allows it)."""

    name = "vm smoke"
    script = "vmsmoke.py"
    failure_result = FAILURE

    def __init__(self, allow_tcg: bool, **kwargs):
        super().__init__(**kwargs)
        self.allow_tcg = allow_tcg

    def arguments(self):
        probed = self.getProperty(props.PROBED_CAPABILITIES) or {}
        kvm_ok = "kvm" in (probed.get("capabilities") or [])
        accel = "kvm" if kvm_ok or not self.allow_tcg else "tcg"
        args = ["--qemu", self.getProperty("plasma_qemu_path"), "--image", self.getProperty("plasma_qcow2_path"),
                "--accel", accel, "--timeout", "60"]
        return args + (["--allow-tcg"] if self.allow_tcg else [])

    def interpret(self, data, rc):
        self.setProperty("vm_smoke", data, "vm smoke")
        if rc == 0 and data.get("ok"):
            accel = data.get("accel", "kvm")
            how = "guest booted and reported" if data.get("mode") == "boot" else "QMP query-block saw the image (guest not booted)"
            tcg = " (TCG: software emulation, allowed by the leg)" if accel == "tcg" else ""
            self.summary = f"VM smoke OK under {accel}{tcg}: {how} in {data.get('seconds', '?')}s"
            return SUCCESS
        self.summary = f"VM smoke failed: {data.get('detail') or 'see log'}"
        return FAILURE
