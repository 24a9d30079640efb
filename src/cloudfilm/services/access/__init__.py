"""Who may do what: accounts, grants, people and the hospital's films.

- ``accounts``, ``credentials``, ``oidc``, ``ratelimit``: sign-in, tokens, sessions and
  lock-outs;
- ``policy``: the one decision over grants (``domain.access``) for every entry point;
- ``admission``: which uploaded instances may enter whose folder;
- ``people``: persons, their hospital records, caregivers and claim codes;
- ``sharing``, ``share_card``: share links, QR codes and the printable card;
- ``films``, ``film_slip``, ``film_autoissue``: hospital-issued cloud films and their slip;
- ``signup``: keeping a film or code for life (sign-up, keep, family invitations).
"""
