from dptune.cli import main

raise SystemExit(main())
