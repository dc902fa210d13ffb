"""``POST /v1/oauth2/token`` (§1.3) and ``POST /v1/tokenize`` (§2)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from worker.sandbox.outcomes import MAGIC_CARDS
from worker.sandbox.routes.common import get_state, read_json
from worker.sandbox.state import SandboxState
from worker.sandbox.validation import luhn_ok
from worker.sandbox.wire import envelope, new_guid, problem, validation_problem

router = APIRouter()
AUDIENCE = ["payments", "orders", "merchants", "eligibility-sftp", "eligibility", "contact"]


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def make_jwt(state: SandboxState, client_id: str, now: float) -> str:
    """An HS256 JWT with the claims seen on the real sandbox (§1.3)."""
    cfg = state.config
    claims = {
        "sub": client_id,
        "unique_name": client_id,
        "jti": new_guid(),
        "iat": str(int(now * 1000)),
        "nbf": int(now),
        "exp": int(now + cfg.token_ttl_s),
        "iss": "Api-Client-Service",
        "custom:mid": cfg.mid,
        "aud": AUDIENCE,
    }
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    sig = hmac.new(cfg.app_secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(sig)}"


@router.post("/v1/oauth2/token")
async def token(request: Request) -> JSONResponse:
    """Exchange AppKey/AppSecret (keys case-insensitive) for a bearer token; 400 if wrong."""
    state = get_state(request)
    body, bad = await read_json(request)
    if bad is not None:
        return bad
    fields = {str(k).lower(): v for k, v in body.items()} if isinstance(body, dict) else {}
    cfg = state.config
    key_ok = hmac.compare_digest(str(fields.get("appkey", "")), cfg.app_key)
    secret_ok = hmac.compare_digest(str(fields.get("appsecret", "")), cfg.app_secret)
    if not (key_ok and secret_ok):
        return problem(400, "Invalid credentials", {"AppKey": ["Invalid AppKey or AppSecret."]})
    client_id = str(new_guid())
    with state.lock:
        now = state.now()
        access = make_jwt(state, client_id, now)
        expires_ms = int((now + cfg.token_ttl_s) * 1000)
        state.tokens[access] = expires_ms
    return JSONResponse(
        envelope(
            None,
            accessToken=access,
            refreshToken=secrets.token_urlsafe(32),
            expires=expires_ms,
            id=client_id,
            session=None,
            daysToEnforceMFA=None,
            skipAvailable=None,
        )
    )


def _card_errors(card: Any) -> dict[str, list[str]]:
    if not isinstance(card, dict):
        return {"payment_method.credit_card": ["The credit_card field is required."]}
    errors: dict[str, list[str]] = {}
    for name in ("first_name", "last_name", "number", "month", "year"):
        if not str(card.get(name) or "").strip():
            errors[f"payment_method.credit_card.{name}"] = [f"The {name} field is required."]
    number = str(card.get("number") or "")
    if number and not luhn_ok(number):
        errors["payment_method.credit_card.number"] = ["The number field is invalid."]
    return errors


@router.post("/v1/tokenize")
async def tokenize(request: Request) -> JSONResponse:
    """Vault a card; answers ``transaction.payment_method.token`` (never stores the PAN)."""
    state = get_state(request)
    cfg = state.config
    params = request.query_params
    if params.get("mid", "").lower() != cfg.mid.lower() or not hmac.compare_digest(
        params.get("environment", ""), cfg.tokenization_key
    ):
        return problem(401, "Unknown mid or tokenization key")
    body, bad = await read_json(request)
    if bad is not None:
        return bad
    method = body.get("payment_method") if isinstance(body, dict) else None
    card = method.get("credit_card") if isinstance(method, dict) else None
    errors = (
        _card_errors(card)
        if isinstance(method, dict)
        else {"payment_method": ["The payment_method field is required."]}
    )
    if errors:
        return validation_problem(errors)
    assert isinstance(method, dict) and isinstance(card, dict)
    return JSONResponse(_vault(state, method, card))


def _vault(state: SandboxState, method: dict[str, Any], card: dict[str, Any]) -> dict[str, Any]:
    number = str(card["number"])
    prefix = MAGIC_CARDS.get(number, "tok")
    token = f"{prefix}_{secrets.token_hex(12)}"
    meta = {
        "token": token,
        "last_four_digits": number[-4:],
        "first_six_digits": number[:6],
        "first_name": card.get("first_name"),
        "last_name": card.get("last_name"),
        "full_name": f"{card.get('first_name')} {card.get('last_name')}",
        "month": int(str(card["month"])),
        "year": int(str(card["year"])),
        "card_type": _brand(number),
        "email": method.get("email"),
        "fingerprint": hashlib.sha256(number.encode()).hexdigest()[:30],
        "number": None,
        "verification_value": None,
        "payment_method_type": "credit_card",
        "address1": None,
        "address2": None,
        "city": None,
        "state": None,
        "zip": None,
        "country": None,
        "storage_state": "retained",
    }
    with state.lock:
        state.card_tokens[token] = meta
    transaction = {
        "succeeded": True,
        "on_test_gateway": True,
        "state": "succeeded",
        "token": new_guid(),
        "transaction_type": "AddPaymentMethod",
        "amount": 0,
        "created_at": None,
        "updated_at": None,
        "payment_method": meta,
    }
    return envelope(None, transaction=transaction, cardBinInfo=None)


def _brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"34", "37"}:
        return "american_express"
    if number[:2] in {"51", "52", "53", "54", "55"} or number[:4] in {"2221", "2720"}:
        return "master"
    if number.startswith("6"):
        return "discover"
    return "unknown"
