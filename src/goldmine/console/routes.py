"""The console's pages and forms: a small FastAPI app mounted at /console, rendering Jinja2 templates on the server.

Every page calls the same Python functions as the HTTP routes (registry, datasets, jobs, billing, usage,
monitoring), and the actions that exist as routes (predict, promote, rollback) call the route functions themselves,
so limits, metering and the load-before-switch order are the API's; nothing here talks HTTP to the server itself.

Scoping is the API's: a key sees its own tenant's datasets, jobs, models, usage and keys, and another tenant's id
reads 404, the answer for an id that does not exist. An admin-scope key sees every tenant's models, jobs and
monitoring and may choose the tenant of the usage and keys pages (the admin view); promote, rollback and key
management need the admin scope, as `POST /v1/admin/...` and `goldmine keys` do: the console grants nothing the
API does not. Templates autoescape everything; charts are SVG built with escaped labels (`charts`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from datetime import datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from goldmine.console import charts, figures
from goldmine.console.session import (
    COOKIE,
    LOGIN_COOKIE,
    PATH,
    Session,
    clear_cookie,
    decode,
    encode,
    key_info,
    load_secret,
    same_token,
    set_cookie,
)
from goldmine.errors import DataError, GoldmineError
from goldmine.monitoring.report import windows
from goldmine.serving import auth, billing, datasets, jobs, registry
from goldmine.serving.db import Tenant, utcnow
from goldmine.serving.errors import Forbidden, InvalidRequest, NotFound, ServingError, Unauthorized, http_status
from goldmine.serving.metering import usage_summary
from goldmine.serving.ratelimit import month_start, next_month_start
from goldmine.serving.routers import admin, predict
from goldmine.serving.settings import ServingSettings

log = logging.getLogger(__name__)

UPLOAD_PATH = f"{PATH}/datasets/upload"  # streamed to disk like POST /v1/datasets (exempt from the body limit)
HERE = Path(__file__).parent
HEADERS = [(b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self'; "
            b"script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
           (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"),
           (b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]


class SignedOut(Exception):
    """No valid session: pages redirect to the sign-in form."""


class CsrfFailed(Exception):
    """A POST without the session's CSRF token."""


class SecurityHeaders:
    """CSP (scripts and styles from /console/static only), no framing, no referrer, no caching of pages."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


def _money(minor: int, currency: str) -> str:
    return f"{minor / 100:.2f} {currency}" if currency in ("EUR", "USD", "GBP", "CHF") else f"{minor} {currency}"


def _templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["money"] = _money
    env.globals["zip"] = zip
    env.filters["num"] = lambda v, digits=4: "-" if v is None else (f"{v:.{digits}g}" if isinstance(v, float) else v)
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)
    return env


def create_console(parent: FastAPI, settings: ServingSettings) -> ASGIApp:
    """The console app; `parent` is the serving app, whose lifespan builds the services the pages use."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    env = _templates()
    secrets_: list[bytes] = []  # the signing secret, read (or made) on first use, not when the app is built
    max_age = int(settings.console.session_hours * 3600)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def secret() -> bytes:
        if not secrets_:
            secrets_.append(load_secret(settings))
        return secrets_[0]

    def services():
        return parent.state.services

    async def session_of(request: Request) -> Session:
        decoded = decode(secret(), request.cookies.get(COOKIE, ""), max_age)
        key = await asyncio.to_thread(key_info, services().db, decoded[0]) if decoded else None
        if key is None:
            raise SignedOut()
        return Session(key, decoded[1])

    async def form(request: Request, session: Session | None) -> dict[str, str]:
        """The POSTed form's fields (urlencoded; the body is read as is), after the CSRF check."""
        fields = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace"),
                                                  keep_blank_values=True).items()}
        expected = session.csrf if session else request.cookies.get(LOGIN_COOKIE)
        if not same_token(expected, fields.get("csrf")):
            raise CsrfFailed()
        return fields

    def render(request: Request, template: str, session: Session | None, status: int = 200, **context) -> Response:
        html = env.get_template(template).render(base=PATH, session=session, csrf=session.csrf if session else "",
                                                 page=template.removesuffix(".html"), **context)
        return HTMLResponse(html, status_code=status)

    async def training_session(request: Request) -> Session:
        """The session of a dataset or job page: the key needs the `train` scope, as the API's routes do (403)."""
        session = await session_of(request)
        session.key.require("train")
        return session

    def tenant_scope(session: Session) -> str | None:
        """Whose models, jobs and windows a page lists: the key's tenant, or every tenant's (None) for an admin."""
        return None if session.admin else session.key.tenant

    def chosen_tenant(session: Session, tenant: str | None) -> str:
        """The tenant of the usage and keys pages: the key's own, or any (admin scope)."""
        if tenant and tenant != session.key.tenant:
            if not session.admin:
                raise Forbidden("another tenant's pages need the admin scope")
            return registry.check_name(tenant, "tenant")
        return session.key.tenant

    def tenants() -> list[str]:
        with services().db.session() as db_session:
            return [row.id for row in db_session.query(Tenant).order_by(Tenant.id)]

    def go(path: str) -> RedirectResponse:
        return RedirectResponse(f"{PATH}{path}", status_code=303)

    @app.exception_handler(SignedOut)
    async def signed_out(request: Request, err: SignedOut) -> Response:
        if request.method == "GET":
            return go("/login")
        return render(request, "error.html", None, 401, message="Your session has ended: sign in again.")

    @app.exception_handler(CsrfFailed)
    async def csrf_failed(request: Request, err: CsrfFailed) -> Response:
        return render(request, "error.html", None, 403, message="The form was missing its security token, or it "
                      "came from an old page: reload the page and try again.")

    async def error_page(request: Request, status: int, message: str) -> Response:
        """An error as a page, with the navigation when the browser is signed in."""
        try:
            session = await session_of(request)
        except SignedOut:
            session = None
        return render(request, "error.html", session, status, message=message)

    @app.exception_handler(GoldmineError)
    async def goldmine_error(request: Request, err: GoldmineError) -> Response:
        status = http_status(err)
        message = str(err) if status < 500 or isinstance(err, ServingError) else "internal server error"
        if status >= 500:
            log.error("console: %s: %s", type(err).__name__, err)
        return await error_page(request, status, message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> Response:
        return await error_page(request, err.status_code,
                                "No such page." if err.status_code == 404 else str(err.detail))

    # -- signing in and out ---------------------------------------------------------------------------------------

    @app.get("/login")
    async def login_page(request: Request) -> Response:
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        response = render(request, "login.html", None, login_csrf=token)
        set_cookie(response, request, LOGIN_COOKIE, token, 3600)
        return response

    @app.post("/login")
    async def login(request: Request) -> Response:
        fields = await form(request, None)
        try:
            key = await asyncio.to_thread(auth.authenticate, services().db, fields.get("key", "").strip())
        except Unauthorized as err:
            return render(request, "login.html", None, 401, login_csrf=request.cookies.get(LOGIN_COOKIE, ""),
                          error=str(err))
        response = go("/")
        set_cookie(response, request, COOKIE, encode(secret(), key.id, secrets.token_urlsafe(24)), max_age)
        clear_cookie(response, request, LOGIN_COOKIE)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        await form(request, await session_of(request))
        response = go("/login")
        clear_cookie(response, request, COOKIE)
        return response

    # -- overview -------------------------------------------------------------------------------------------------

    @app.get("/")
    async def home(request: Request) -> Response:
        session = await session_of(request)
        db, tenant = services().db, session.key.tenant
        models = await asyncio.to_thread(registry.list_models, db, tenant_scope(session))
        trains = "train" in session.key.scopes
        own_jobs = await asyncio.to_thread(jobs.list_jobs, db, tenant_scope(session), 5) if trains else None
        own_datasets = await asyncio.to_thread(datasets.list_datasets, db, tenant) if trains else None
        return render(request, "home.html", session, models=models, jobs=own_jobs, datasets=own_datasets)

    # -- datasets -------------------------------------------------------------------------------------------------

    @app.get("/datasets")
    async def dataset_list(request: Request) -> Response:
        session = await training_session(request)
        rows = await asyncio.to_thread(datasets.list_datasets, services().db, session.key.tenant)
        return render(request, "datasets.html", session, datasets=rows)

    @app.get("/datasets/{dataset_id}")
    async def dataset_page(dataset_id: str, request: Request) -> Response:
        session = await training_session(request)
        info = await asyncio.to_thread(datasets.get_dataset, services().db, session.key.tenant, dataset_id)
        return render(request, "dataset.html", session, dataset=info, report=info.report or {})

    @app.post("/datasets/upload")
    async def upload(request: Request, name: Annotated[str, Query(max_length=200)] = "") -> Response:
        """The file as the body (sent by console.js), streamed to disk under the API's limits; JSON answers."""
        try:
            session = await session_of(request)
        except SignedOut:
            return JSONResponse({"error": "your session has ended: sign in again"}, status_code=401)
        if not same_token(session.csrf, request.headers.get("x-csrf-token")):
            return JSONResponse({"error": "missing security token: reload the page"}, status_code=403)
        key, svc = session.key, services()
        try:
            key.require("train")
            limit = await asyncio.to_thread(datasets.upload_limit, svc.db, svc.settings, key.tenant)
            handle = await asyncio.to_thread(datasets.Upload, svc.settings, key.tenant, name, limit)
            try:
                async for chunk in request.stream():
                    handle.write(chunk)
            except BaseException:
                handle.discard()
                raise
            info, created = await asyncio.to_thread(datasets.store, svc.db, svc.settings, key.tenant, handle)
        except DataError as err:
            return JSONResponse({"error": str(err).split("\n")[0], "issues": [str(i) for i in err.issues]},
                                status_code=422)
        except GoldmineError as err:
            status = http_status(err)
            return JSONResponse({"error": str(err) if status < 500 else "internal server error"}, status_code=status)
        return JSONResponse({"id": info.id, "url": f"{PATH}/datasets/{info.id}"}, status_code=201 if created else 200)

    @app.post("/datasets/{dataset_id}/delete")
    async def dataset_delete(dataset_id: str, request: Request) -> Response:
        session = await training_session(request)
        await form(request, session)
        await asyncio.to_thread(datasets.delete_dataset, services().db, session.key.tenant, dataset_id)
        return go("/datasets")

    # -- jobs -----------------------------------------------------------------------------------------------------

    async def jobs_page(request: Request, session: Session, status: int = 200, error: str | None = None,
                        values: dict | None = None) -> Response:
        db = services().db
        rows = await asyncio.to_thread(jobs.list_jobs, db, tenant_scope(session))
        own = await asyncio.to_thread(datasets.list_datasets, db, session.key.tenant)
        return render(request, "jobs.html", session, status, jobs=rows, datasets=own, error=error,
                      base_models=services().settings.jobs.base_models, values=values or {})

    @app.get("/jobs")
    async def job_list(request: Request) -> Response:
        return await jobs_page(request, await training_session(request))

    @app.post("/jobs")
    async def job_start(request: Request) -> Response:
        session = await training_session(request)
        fields = await form(request, session)
        svc = services()
        try:
            extra = json.loads(fields.get("config") or "{}")
            if not isinstance(extra, dict):
                raise InvalidRequest("config: a JSON object of training config fields, e.g. {\"training\": "
                                     "{\"learning_rate\": 0.0001}}")
            config = jobs.flatten(extra)
            config["model.name"] = fields.get("base_model", "")
            if fields.get("max_steps"):
                config["training.max_steps"] = int(fields["max_steps"])
            body = jobs.JobRequest(model=fields.get("model", ""), train=fields.get("train", ""),
                                   dev=fields.get("dev") or None, test=fields.get("test") or None, config=config,
                                   export=fields.get("export") or None)
            job = await asyncio.to_thread(jobs.create_job, svc.db, svc.settings, session.key.tenant, body)
        except (ValueError, ValidationError) as err:  # bad JSON, a bad number, a bad field of the request
            return await jobs_page(request, session, 422, _validation_message(err), fields)
        except GoldmineError as err:
            if http_status(err) >= 500:
                raise
            return await jobs_page(request, session, http_status(err), str(err), fields)
        await asyncio.to_thread(svc.queue().enqueue, job.id)
        return go(f"/jobs/{job.id}")

    async def job_context(request: Request, job_id: str) -> tuple[Session, dict]:
        session = await training_session(request)
        job = await asyncio.to_thread(jobs.get_job, services().db, tenant_scope(session), job_id)
        curves = figures.job_curves(job.log)
        steps = sorted({step for points in curves.values() for step, _ in points})
        groups = {"loss": [n for n in curves if n.endswith("loss")],
                  "dev metrics": [n for n in curves if not n.endswith("loss")]}  # two scales: two charts
        chart_list = [charts.lines(f"job {job.id}: {title} by step (steps {steps[0]} to {steps[-1]})",
                                   {n: [dict(curves[n]).get(step) for step in steps] for n in names})
                      for title, names in groups.items() if names]
        return session, {"job": job, "curves": curves, "charts": chart_list, "terminal": job.status in jobs.TERMINAL}

    @app.get("/jobs/{job_id}")
    async def job_page(job_id: str, request: Request) -> Response:
        session, context = await job_context(request, job_id)
        return render(request, "job.html", session, **context)

    @app.get("/jobs/{job_id}/live")
    async def job_live(job_id: str, request: Request) -> Response:
        """The live part of a job page (progress, curves, log), re-fetched by console.js until the job ends."""
        session, context = await job_context(request, job_id)
        return render(request, "job_live.html", session, **context)

    @app.post("/jobs/{job_id}/cancel")
    async def job_cancel(job_id: str, request: Request) -> Response:
        session = await training_session(request)
        await form(request, session)
        await asyncio.to_thread(jobs.cancel_job, services().db, tenant_scope(session), job_id)
        return go(f"/jobs/{job_id}")

    # -- models ---------------------------------------------------------------------------------------------------

    @app.get("/models")
    async def model_list(request: Request) -> Response:
        session = await session_of(request)
        rows = await asyncio.to_thread(registry.list_models, services().db, tenant_scope(session))
        return render(request, "models.html", session, models=rows)

    async def model_page(request: Request, session: Session, name: str, status: int = 200,
                         message: str | None = None, error: str | None = None) -> Response:
        detail = await asyncio.to_thread(figures.model_detail, services().db, name, tenant_scope(session))
        return render(request, "model.html", session, status, model=detail, message=message, error=error)

    @app.get("/models/{name}")
    async def model_get(name: str, request: Request) -> Response:
        return await model_page(request, await session_of(request), name)

    async def alias_action(request: Request, name: str, action: str) -> Response:
        session = await session_of(request)
        fields = await form(request, session)
        await asyncio.to_thread(figures.model_detail, services().db, name, tenant_scope(session))  # 404 first
        try:
            session.key.require("admin")
            if action == "promote":
                move = await admin.promote(name, admin.PromoteIn(target=fields.get("target", ""),
                                                                 alias=fields.get("alias") or "production",
                                                                 force=fields.get("force") == "1"),
                                           session.key, services())
            else:
                move = await admin.rollback(name, session.key, services(),
                                            admin.RollbackIn(alias=fields.get("alias") or "production"))
        except ValidationError as err:
            return await model_page(request, session, name, 422, error=_validation_message(err))
        except GoldmineError as err:
            if http_status(err) >= 500:
                raise
            return await model_page(request, session, name, http_status(err), error=str(err))
        said = f"{move.alias} of {move.model} now points at {move.current} (was {move.previous or 'unset'})"
        return await model_page(request, session, name, message=said)

    @app.post("/models/{name}/promote")
    async def model_promote(name: str, request: Request) -> Response:
        return await alias_action(request, name, "promote")

    @app.post("/models/{name}/rollback")
    async def model_rollback(name: str, request: Request) -> Response:
        return await alias_action(request, name, "rollback")

    # -- playground -----------------------------------------------------------------------------------------------

    @app.get("/playground")
    async def playground(request: Request, model: str = "") -> Response:
        session = await session_of(request)
        rows = await asyncio.to_thread(registry.list_models, services().db, session.key.tenant)
        return render(request, "playground.html", session, models=rows, values={"model": model})

    @app.post("/playground")
    async def playground_run(request: Request) -> Response:
        """One metered predict call, through the predict route's own function (limits, quota, usage record)."""
        session = await session_of(request)
        fields = await form(request, session)
        svc = services()
        rows = await asyncio.to_thread(registry.list_models, svc.db, session.key.tenant)
        texts = [line.strip() for line in fields.get("texts", "").splitlines() if line.strip()]
        result, error, status = None, None, 200
        try:
            session.key.require("predict")
            body = predict.PredictRequest(texts=texts)
            response = await predict.predict(fields.get("model", ""), body, request, session.key, svc,
                                              version=fields.get("version") or None, idempotency_key=None)
            result = json.loads(response.body)
        except ValidationError as err:
            error, status = _validation_message(err), 422
        except GoldmineError as err:
            if http_status(err) >= 500:
                raise
            error, status = str(err), http_status(err)
        return render(request, "playground.html", session, status, models=rows, values=fields, texts=texts,
                      result=result, error=error)

    # -- keys -----------------------------------------------------------------------------------------------------

    async def keys_page(request: Request, session: Session, tenant: str, created: str | None = None,
                        status: int = 200, error: str | None = None) -> Response:
        rows = await asyncio.to_thread(auth.list_keys, services().db, tenant)
        all_tenants = await asyncio.to_thread(tenants) if session.admin else []
        return render(request, "keys.html", session, status, keys=rows, tenant=tenant, tenants=all_tenants,
                      created=created, error=error)

    @app.get("/keys")
    async def key_list(request: Request, tenant: Annotated[str | None, Query(max_length=64)] = None) -> Response:
        session = await session_of(request)
        return await keys_page(request, session, chosen_tenant(session, tenant))

    @app.post("/keys")
    async def key_create(request: Request) -> Response:
        """A new key, shown once in this response (never stored, never in a URL)."""
        session = await session_of(request)
        fields = await form(request, session)
        tenant = chosen_tenant(session, fields.get("tenant"))
        session.key.require("admin")
        scopes = [s for s in auth.SCOPES if fields.get(f"scope_{s}")]
        try:
            created = await asyncio.to_thread(auth.create_key, services().db, tenant, scopes or ["predict"])
        except GoldmineError as err:
            if http_status(err) >= 500:
                raise
            return await keys_page(request, session, tenant, status=http_status(err), error=str(err))
        return await keys_page(request, session, tenant, created=created.key, status=201)

    @app.post("/keys/{key_id}/revoke")
    async def key_revoke(key_id: str, request: Request) -> Response:
        session = await session_of(request)
        fields = await form(request, session)
        session.key.require("admin")
        tenant = chosen_tenant(session, fields.get("tenant"))
        listed = await asyncio.to_thread(auth.list_keys, services().db, tenant)
        if key_id not in {k["id"] for k in listed}:
            raise NotFound(f"no API key with id {key_id!r}")
        await asyncio.to_thread(auth.revoke_key, services().db, key_id)
        return go(f"/keys?tenant={tenant}")

    # -- usage and invoices ---------------------------------------------------------------------------------------

    def period(month: str | None) -> tuple[str, datetime, datetime]:
        since = billing.parse_month(month) if month else month_start(utcnow())
        return since.strftime("%Y-%m"), since, next_month_start(since)

    @app.get("/usage")
    async def usage(request: Request, month: Annotated[str | None, Query(max_length=7)] = None,
                    tenant: Annotated[str | None, Query(max_length=64)] = None) -> Response:
        session = await session_of(request)
        tenant = chosen_tenant(session, tenant)
        label, since, until = period(month)
        db, svc = services().db, services()
        summary = await asyncio.to_thread(usage_summary, db, tenant, since, until)
        days, series = await asyncio.to_thread(figures.usage_by_day, db, tenant, since, until)
        try:
            bill = await asyncio.to_thread(billing.invoice, db, svc.settings, tenant, label)
        except NotFound:  # a tenant with no row yet: nothing to bill
            bill = None
        chart = charts.stacked_bars(f"calls per day in {label}, by model", days, series) if series else None
        all_tenants = await asyncio.to_thread(tenants) if session.admin else []
        return render(request, "usage.html", session, tenant=tenant, month=label, summary=summary, chart=chart,
                      days=days, series=series, invoice=bill, tenants=all_tenants)

    @app.get("/usage/invoice.csv")
    async def invoice_csv(request: Request, month: Annotated[str | None, Query(max_length=7)] = None,
                          tenant: Annotated[str | None, Query(max_length=64)] = None) -> Response:
        session = await session_of(request)
        tenant = chosen_tenant(session, tenant)
        label, _, _ = period(month)
        bill = await asyncio.to_thread(billing.invoice, services().db, services().settings, tenant, label)
        return PlainTextResponse(bill.to_csv(), media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="invoice-{tenant}-{label}.csv"'})

    # -- monitoring -----------------------------------------------------------------------------------------------

    @app.get("/monitoring")
    async def monitoring(request: Request) -> Response:
        session = await session_of(request)
        db, scope = services().db, tenant_scope(session)
        models = await asyncio.to_thread(registry.list_models, db, scope)
        panels = []
        for model in models:
            rows = await asyncio.to_thread(windows, db, model.name, scope, None, 50)
            reports = [row.to_dict() for row in rows]
            chart = charts.lines(f"{model.name}: out-of-scope rate, mean confidence and MMD p-value by window", {
                "out-of-scope rate": [r.get("out_of_scope_rate") for r in reports],
                "mean confidence": [r.get("mean_confidence") for r in reports],
                "MMD p-value": [r.get("mmd_p_value") for r in reports]}, top=1.0) if reports else None
            panels.append({"model": model, "windows": reports, "chart": chart,
                           "alarms": [r for r in reports if r.get("alarm")],
                           "alarm_now": bool(reports and reports[-1].get("alarm"))})
        return render(request, "monitoring.html", session, panels=panels,
                      alarm_p_value=services().settings.drift.alarm_p_value)

    return SecurityHeaders(app)


def _validation_message(err: Exception) -> str:
    if isinstance(err, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in err.errors())
    return f"invalid value: {err}"
