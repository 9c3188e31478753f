from mixsep.run import main

main()
