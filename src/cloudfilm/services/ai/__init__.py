"""AI services in and out (issue 15, IHE AI Results): sending stable series to AI nodes
(``sending``), taking their SR/SEG results back (``admission``, ``results``), the
candidates a physician accepts or rejects (``candidates``) and the built-in detector's
job (``detect``)."""
