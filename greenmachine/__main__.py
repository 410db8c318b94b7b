from greenmachine.cli import main

main()
