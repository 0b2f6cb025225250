"""Model storage URIs (``models[].storage_uri``): parsing and what KServe does with each scheme (pure).

KServe v0.20 reads ``spec.predictor.model.storageUri`` in its pod mutating webhook
(``pkg/webhook/admission/pod/storage_initializer_injector.go``) and makes the model appear at
``/mnt/models`` (``constants.DefaultModelLocalMountPath``) in ``kserve-container``:

- ``pvc://claim/path``: the claim is mounted there directly, read-only, ``subPath=path``, as volume
  ``kserve-pvc-source`` (``CommonStorageInitialization``; ``utils.ParsePvcURI``). No copy, no init container.
- ``hf://org/model[:revision]``, ``s3://bucket/path``: the ``storage-initializer`` init container downloads
  into the emptyDir ``kserve-provision-location`` mounted there (``kserve_storage.py _download_hf``, ``_download_s3``).
- ``oci://registry/repo:tag`` (a *modelcar*): the image runs as a sidecar; an emptyDir at ``/mnt`` (the
  parent) holds the symlink ``/mnt/models`` into the sidecar's filesystem, with ``shareProcessNamespace``
  (``utils.ConfigureModelcarToContainer``). OpenShift AI's recommended way to ship models.

The mount is added whatever the runtime container already mounts (``AddModelMount`` compares volume names
only), so a runtime volume at the same path makes the API server refuse the pod.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Scheme = Literal["pvc", "oci", "hf", "s3"]
SCHEMES: tuple[Scheme, ...] = ("pvc", "oci", "hf", "s3")
MODEL_DIR = "/mnt/models"
"""Where KServe puts the model (``constants.DefaultModelLocalMountPath``); vLLM is pointed here."""
MODELCAR_DIR = "/mnt"
"""The modelcar's emptyDir is mounted at the parent of MODEL_DIR (``GetParentDirectory(modelPath)``)."""
PVC_VOLUME = "kserve-pvc-source"  # constants.PvcSourceMountName
DOWNLOAD_VOLUME = "kserve-provision-location"  # constants.StorageInitializerVolumeName
MODELCAR_VOLUME = "kserve-provision-location"  # utils.ModelcarNames(0)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_HF_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# A tag is ASCII ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}, the distribution spec's grammar): re.ASCII keeps \w from
# matching other letters (the Helm chart's Go regexp, where \w is ASCII, agrees).
_OCI_REF = re.compile(r"^[a-z0-9][a-z0-9.-]*(?::[0-9]+)?/[a-z0-9._/-]+(?::[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})$",
                      re.ASCII)


@dataclass(frozen=True)
class StorageURI:
    """A parsed ``storage_uri``."""

    uri: str
    scheme: Scheme
    location: str
    """pvc: the claim; oci: the image reference; hf: ``org/model``; s3: the bucket."""
    path: str
    """pvc: the path inside the claim (``""``: the whole claim); hf: the revision; s3: the key prefix; oci: ``""``."""

    @property
    def downloads(self) -> bool:
        """True when KServe's storage-initializer init container copies the model (hf://, s3://)."""
        return self.scheme in ("hf", "s3")


def parse(uri: str) -> StorageURI:
    """Parse and check a ``storage_uri`` the way KServe will read it.

    Raises:
        ValueError: one sentence saying what is wrong (unknown scheme, malformed URI).
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise ValueError(f"{uri!r} is not a URI: use pvc://CLAIM/PATH, oci://IMAGE, hf://ORG/MODEL or "
                         "s3://BUCKET/PATH")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown URI scheme {scheme + '://'!r}: poolserve supports pvc://, oci://, hf:// and s3:// "
                         "(KServe's other schemes are not rendered)")
    if scheme == "pvc":
        claim, _, path = rest.partition("/")
        if not _DNS_SUBDOMAIN.match(claim) or len(claim) > 253:
            raise ValueError(f"{uri!r}: {claim!r} is not a PVC name (pvc://CLAIM/PATH)")
        if ".." in path.split("/"):
            raise ValueError(f"{uri!r}: '..' is not allowed in the path (it becomes the mount's subPath)")
        return StorageURI(uri, "pvc", claim, path.strip("/"))
    if scheme == "hf":
        # kserve_storage.py _download_hf: exactly hf://owner/model[:revision]
        parts = rest.split("/")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"{uri!r}: expected hf://OWNER/MODEL[:REVISION] (KServe's storage initializer "
                             "rejects anything else)")
        model, _, revision = parts[1].partition(":")
        if not _HF_PART.match(parts[0]) or not _HF_PART.match(model):
            raise ValueError(f"{uri!r}: {parts[0]}/{model} is not a Hugging Face repository id")
        if revision and (not _HF_PART.match(revision) or revision in (".", "..")):
            raise ValueError(f"{uri!r}: {revision!r} is not a revision (a branch, tag or commit hash)")
        return StorageURI(uri, "hf", f"{parts[0]}/{model}", revision)
    if scheme == "s3":
        bucket, _, key = rest.partition("/")
        if not _BUCKET.match(bucket):
            raise ValueError(f"{uri!r}: {bucket!r} is not an S3 bucket name (s3://BUCKET/PATH)")
        return StorageURI(uri, "s3", bucket, key.strip("/"))
    if not _OCI_REF.match(rest):
        raise ValueError(f"{uri!r}: expected oci://REGISTRY/REPOSITORY:TAG (or @sha256:DIGEST), the modelcar image")
    return StorageURI(uri, "oci", rest, "")


def mount_conflict(storage: StorageURI, mount_path: str) -> str | None:
    """Why a runtime volume mounted at ``mount_path`` clashes with KServe's model mount, or None.

    KServe adds its mount at MODEL_DIR (a modelcar: at MODELCAR_DIR) without looking at existing mount
    paths; Kubernetes refuses a pod whose container mounts one path twice ("must be unique"), and a
    mount inside the model directory or over its parent hides the model.
    """
    theirs = MODELCAR_DIR if storage.scheme == "oci" else MODEL_DIR
    mine = "/" + mount_path.strip("/")
    if mine == theirs:
        return (f"the runtime mounts a volume at {mine}, where KServe mounts the model for {storage.scheme}:// "
                "(AddModelMount compares volume names only): the API server refuses the pod, volumeMounts "
                "mountPath must be unique")
    if mine == MODEL_DIR or mine.startswith(MODEL_DIR + "/"):
        # oci: /mnt/models must be a symlink the modelcar creates inside KServe's /mnt emptyDir.
        return (f"the runtime mounts a volume at {mine}, inside {MODEL_DIR} where KServe puts the model for "
                f"{storage.scheme}://: it hides part of the model")
    return None
