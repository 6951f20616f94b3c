from mimicry.cli import main

main()
