from waybill.cli import main

raise SystemExit(main())
