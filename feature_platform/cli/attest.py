"""`fp attest keygen|sign|verify`: signed in-toto attestations for datasets and model directories."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from feature_platform.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_json_flag,
    domain_errors,
    input_file,
    print_json,
)

if TYPE_CHECKING:
    from feature_platform.cli.common import Commands

PATH_HELP = "a dataset's manifest.json (signs it and its data files) or a model directory (every file in it)"


def register(groups: Commands) -> None:
    cmds = groups.group(
        "attest", "{keygen,sign,verify}",
        help="sign and verify datasets and models offline (in-toto statement, DSSE, ed25519)",
        description="The signature lives beside the artifact: <dataset dir>/attestation.intoto.jsonl or "
        "<model dir>/attestation.intoto.jsonl (a registered model: the run artifact "
        "training/attestation.intoto.jsonl). With FP_TRUST_POLICY set, promotion refuses what is unsigned, signed "
        "by an unknown key or changed since signing.")

    keygen = cmds.add("keygen", _keygen, help="write a new ed25519 key pair (PEM) into a directory")
    keygen.add_argument("--out", required=True, type=Path, help="directory for signing_key.pem and signing_key.pub.pem")
    keygen.add_argument("--force", action="store_true", help="replace an existing key pair")
    add_json_flag(keygen)

    sign = cmds.add("sign", _sign, help="sign a dataset or model directory with a private key")
    sign.add_argument("--key", required=True, type=input_file, help="PEM ed25519 private key")
    sign.add_argument("path", type=Path, help=PATH_HELP)
    add_json_flag(sign)

    verify = cmds.add(
        "verify", _verify, help="check the signature and that no signed byte changed (exit 0 valid, 1 not)",
        description="Exit 0 when the attestation beside PATH is signed by the key given and every signed file still "
        "has its signed sha256; 1 when it is unsigned, signed by another key, the signature is bad or bytes changed; "
        "2 on usage errors. Give --pub, or --policy (default $FP_TRUST_POLICY) to trust the policy's keys.")
    keys = verify.add_mutually_exclusive_group()
    keys.add_argument("--pub", type=input_file, default=None, help="PEM ed25519 public key to trust")
    keys.add_argument("--policy", type=input_file, default=None, help="trust policy file (JSON or TOML)")
    verify.add_argument("path", type=Path, help=PATH_HELP)
    add_json_flag(verify)


def _keygen(args: argparse.Namespace) -> int:
    from feature_platform.attest.attestation import SigningRefused, key_id, keygen, load_public_key

    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out}: not a directory")
    with domain_errors(failed=SigningRefused):
        private, public = keygen(args.out, force=args.force)
    keyid = key_id(load_public_key(public))
    if args.json:
        print_json({"private_key": str(private), "public_key": str(public), "keyid": keyid})
    else:
        print(f"wrote {private} (private, keep it secret) and {public} (keyid {keyid})")
    return EXIT_OK


def _sign(args: argparse.Namespace) -> int:
    from feature_platform.attest.attestation import AttestationError, SigningRefused, sign_path

    with domain_errors(usage=AttestationError, failed=SigningRefused):
        written = sign_path(args.path, args.key)
    if args.json:
        print_json({"path": str(args.path), "attestation": str(written)})
    else:
        print(f"signed {args.path}: {written}")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from feature_platform.attest.attestation import artifact_at, trusted_key, verify
    from feature_platform.attest.policy import load_policy, policy_path_from_env

    if args.pub is not None:
        key = trusted_key(args.pub)
        trusted = {key.keyid: key}
    else:
        policy_path = args.policy or policy_path_from_env()
        if policy_path is None:
            raise UsageError("give --pub PUBLIC.pem or --policy FILE (or set FP_TRUST_POLICY)")
        trusted = load_policy(policy_path).keys
    verdict = verify(artifact_at(args.path), trusted)
    if args.json:
        print_json(verdict.to_json_dict())
    elif verdict.ok:
        print(f"verified {verdict.artifact}: {verdict.detail}")
    if not verdict.ok:
        print(f"fp: error: {verdict.line()}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
