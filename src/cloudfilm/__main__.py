from cloudfilm.cli import main

raise SystemExit(main())
