from sb3_mbrl.cli import main

main()
