from sb3_mbrl.zoo.cli import main

main()
