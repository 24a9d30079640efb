"""Pages and assets: the server-rendered portal (pages.py, templates/, locales/), the
Cornerstone3D patient viewer (viewer.py, built from web/viewer) and OHIF (ohif.py, built
from web/ohif). Every route here goes through the same login and policy as the API."""
