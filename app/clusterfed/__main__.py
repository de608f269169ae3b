from clusterfed.cli.main import main

raise SystemExit(main())
