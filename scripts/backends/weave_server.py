"""W&B Weave's own SQLite trace server (weave==0.51.59) behind the FastAPI routes Weave generates
for it (weave.trace_server.reference.generate), served by uvicorn on 127.0.0.1.

    python weave_server.py PORT DB_PATH

When WEAVE_SERVER_API_KEY is set, every route asks for HTTP Basic auth with user `api` and that
key, as W&B's hosted trace server does, and answers 401 otherwise; unset, no auth is asked.
"""

import os
import secrets
import sys

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from weave.trace_server.reference.generate import (
    AuthParams,
    ServiceDependency,
    generate_routes,
)
from weave.trace_server.sqlite_trace_server import SqliteTraceServer


class Service:
    """The TraceService protocol around the SQLite trace server."""

    def __init__(self, server: SqliteTraceServer) -> None:
        self.trace_server_interface = server

    def server_info(self):
        from weave.trace_server.trace_service import ServerInfoRes

        return ServerInfoRes(min_required_weave_python_version="0.0.1")

    def read_root(self) -> dict:
        return {"status": "ok"}


def main() -> None:
    port = int(sys.argv[1])
    db_path = sys.argv[2]
    server = SqliteTraceServer(db_path)
    server.setup_tables()
    service = Service(server)
    expected_key = os.environ.get("WEAVE_SERVER_API_KEY")
    basic = HTTPBasic(auto_error=False)

    def authenticate(
        credentials: HTTPBasicCredentials | None = Depends(basic),  # noqa: B008
    ) -> AuthParams:
        if expected_key is None:
            return AuthParams()
        if credentials is None:
            raise HTTPException(status_code=401, detail="authentication required")
        good = secrets.compare_digest(credentials.username, "api") and secrets.compare_digest(
            credentials.password, expected_key
        )
        if not good:
            raise HTTPException(status_code=401, detail="invalid API key")
        return AuthParams(auth=(credentials.username, credentials.password))

    dependency = ServiceDependency(
        service_factory=lambda _auth: service, auth_dependency=authenticate
    )
    app = FastAPI()
    app.include_router(generate_routes(APIRouter(), dependency))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
