"""The three-step "how to use this page" micro-guides, one per page, with a picture each.

Why: many patients are older and unsure on phones; a short picture guide on every page
(seeds: "short instructional micro-guides") beats a manual nobody opens.
"""

from __future__ import annotations

from dataclasses import dataclass

from cloudfilm.i18n import N_, Localizer


@dataclass(frozen=True)
class Step:
    picture: str  # static/portal/guide/<picture>.svg
    text: str


GUIDES: dict[str, tuple[tuple[str, str], ...]] = {
    "login": (
        ("login", N_("Type the username you were given.")),
        ("padlock", N_("Type your password and press “Sign in”.")),
        ("timeline", N_("Your images from every hospital appear, newest first.")),
    ),
    "timeline": (
        ("timeline", N_("Every scan from every hospital is listed here, newest first.")),
        ("tap", N_("Tap a scan to see its pictures and the doctor's report.")),
        ("viewer", N_("Press “Open viewer” to look through the images.")),
    ),
    "folder": (
        ("folder", N_("This folder holds all scans, reports and documents of one person.")),
        ("report", N_("Reports are shown as text; PDF letters open with one tap.")),
        ("compare", N_("Open a scan to compare it with the one before.")),
    ),
    "study": (
        ("tap", N_("Each picture stands for one series of images from this scan.")),
        ("viewer", N_("Press “Open viewer” to scroll through the images.")),
        ("compare", N_("Press “Compare with prior” to see the previous scan beside it.")),
    ),
    "share": (
        ("choose", N_("Choose what to share: some scans, or everything.")),
        ("pin", N_("Add a PIN of 6 digits and tell it to your doctor separately.")),
        ("qr", N_("Show the QR code or print the card. Renew or stop it at any time.")),
    ),
    "caregivers": (
        ("invite", N_("Type your family member's username and press “Invite”.")),
        ("accept", N_("They sign in and accept the invitation on this page.")),
        ("family", N_("They can then see, share and upload your images for you.")),
    ),
    "upload": (
        ("disc", N_("Put in the CD or USB stick from the hospital, or find the zip file.")),
        ("progress", N_("Choose the folder or file. The bar shows how far it is.")),
        ("results", N_("Check the list: every file says if it was stored.")),
    ),
    "shared-with-me": (
        ("doctor", N_("Patients who shared their images with you are listed here.")),
        ("tap", N_("Open a patient's folder or one of their scans.")),
        ("compare", N_("Compare a scan with the prior one side by side.")),
    ),
    "admin": (
        ("admin", N_("The links below lead to the administration tools.")),
        ("folder", N_("Open a person's folder by its number, or a study by its UID.")),
        ("viewer", N_("Studies open in the viewer like for everyone else.")),
    ),
    "pin": (
        ("pin", N_("The person who shared these images told you a PIN.")),
        ("padlock", N_("Type the PIN and press “Open”.")),
        ("viewer", N_("The shared images open; nothing else can be seen.")),
    ),
    "shared": (
        ("timeline", N_("These images were shared with you.")),
        ("tap", N_("Tap a scan to see its pictures and report.")),
        ("viewer", N_("Press “Open viewer” to look through the images.")),
    ),
}


def guide(page: str, loc: Localizer) -> list[Step]:
    """The translated steps of ``page``'s guide (empty if it has none)."""
    return [Step(picture, loc.gettext(text)) for picture, text in GUIDES.get(page, ())]
