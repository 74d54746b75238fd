"""The dependencies the store server's routers share, as typed aliases defined once: a route
says ``engine: EngineDep`` or ``user: FormUser`` and FastAPI supplies (and checks) it.

Who may call:
- ``CurrentLane``: the lane whose credential the request carries (the lane API).
- ``CurrentUser``: a signed-in console user; ``AdminUser``: an IT admin.
- ``FormUser`` / ``FormAdmin``: the same for a form post, whose CSRF token has been checked
  against the session's before the route runs (every console form sends ``csrf_token``).
- ``UploadForm``: a multipart upload, parsed only after the session is checked.
What they work with: ``Services`` (the app's one container, store_server.services) and the
pieces most routes need, ``EngineDep``, ``SettingsDep``, ``MediaDep``, ``SigningKey`` and
``TimeZone``.

The service dependencies are ``async`` because they only read memory: a plain ``def`` would
cost a hop to the thread pool on every request (``current_user`` reads the database, so it
is one). ``get_engine`` and ``get_settings`` live in store_server.app_state, shared with HQ's
app, and are re-exported here.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Annotated

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, Form, Request
from sqlalchemy.engine import Engine
from starlette.datastructures import FormData
from starlette.requests import HTTPConnection

from store_server.app_state import get_engine, get_home, get_settings, get_time_zone
from store_server.auth import SignedIn, check_csrf, current_user, require_admin
from store_server.lanes import current_lane
from store_server.media import MediaStore
from store_server.services import StoreApp, StoreServices
from store_server.settings import StoreSettings

__all__ = [
    "AdminUser",
    "CurrentLane",
    "CurrentUser",
    "EngineDep",
    "FormAdmin",
    "FormUser",
    "HomePage",
    "MediaDep",
    "Services",
    "SettingsDep",
    "SigningKey",
    "TimeZone",
    "UploadForm",
    "get_engine",
    "get_settings",
]


async def get_services(connection: HTTPConnection) -> StoreServices:
    app = connection.app
    if not isinstance(app, StoreApp):  # a store route mounted on some other application
        raise TypeError("the store's routes are served by a StoreApp (create_app)")
    return app.services


Services = Annotated[StoreServices, Depends(get_services)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[StoreSettings, Depends(get_settings)]
TimeZone = Annotated[tzinfo, Depends(get_time_zone)]
HomePage = Annotated[str, Depends(get_home)]


async def get_media(services: Services) -> MediaStore:
    return services.media


async def get_signing_key(services: Services) -> Ed25519PrivateKey:
    return services.signing_key


MediaDep = Annotated[MediaStore, Depends(get_media)]
SigningKey = Annotated[Ed25519PrivateKey, Depends(get_signing_key)]

CurrentLane = Annotated[str, Depends(current_lane)]
CurrentUser = Annotated[SignedIn, Depends(current_user)]
AdminUser = Annotated[SignedIn, Depends(require_admin)]
# Every console form carries the session's CSRF token in this field.
CsrfToken = Annotated[str, Form(max_length=64)]


async def form_user(user: CurrentUser, csrf_token: CsrfToken = "") -> SignedIn:
    """The signed-in user of a form post that carries the session's CSRF token (403 when it
    does not): a page on another site cannot post a form on the user's behalf."""
    check_csrf(user, csrf_token)
    return user


async def form_admin(user: AdminUser, csrf_token: CsrfToken = "") -> SignedIn:
    """``form_user`` for the forms only an IT admin may post."""
    check_csrf(user, csrf_token)
    return user


FormUser = Annotated[SignedIn, Depends(form_user)]
FormAdmin = Annotated[SignedIn, Depends(form_admin)]


async def upload_form(request: Request, user: CurrentUser) -> FormData:
    """A multipart upload (one file, a few fields) with a valid CSRF token. It is parsed
    here, after the session is checked, so nobody who is not signed in can make the server
    read or spool an upload (the server-wide body cap bounds it for those who are)."""
    form = await request.form(max_files=1, max_fields=4)
    token = form.get("csrf_token")
    check_csrf(user, token if isinstance(token, str) else None)
    return form


UploadForm = Annotated[FormData, Depends(upload_form)]
