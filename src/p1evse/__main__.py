from p1evse.cli import main

raise SystemExit(main())
