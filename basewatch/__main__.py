from basewatch.cli import main

raise SystemExit(main())
