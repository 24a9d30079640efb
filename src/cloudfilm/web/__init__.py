"""Pages and assets: the server-rendered portal (pages.py, templates/, locales/), the
Cornerstone3D patient viewer (viewer.py, built from frontend/viewer) and OHIF (ohif.py, built
from frontend/ohif), the login and share-link pages. Every route here goes through the same
login and policy as the API: pages use api/'s plumbing (authn, access, urls) and call
services for plain values; api/ never imports a page."""
