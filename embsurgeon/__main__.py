from embsurgeon.cli import main

main()
