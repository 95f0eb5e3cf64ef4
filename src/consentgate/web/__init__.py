"""The member portal, DPO console and JSON API (FastAPI, Jinja2 templates, EN/DE).

``create_app(PortalConfig(...))`` builds the application; ``consentgate serve`` runs it with uvicorn.
"""

from consentgate.web.app import create_app
from consentgate.web.state import PortalConfig

__all__ = ["PortalConfig", "create_app"]
